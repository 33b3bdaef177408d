"""``cmcsync doctor``: check the key, the network and the endpoint, and say what to do.

Checks, in order, each skipped when an earlier one it needs failed: the API key (never
shown), the URL, proxy variables, DNS, TCP, TLS (``wss://``), the WebSocket handshake with
the key, the welcome's ping interval, and a JSON ping round trip (with the server's clock).
Exit code 0 when nothing is a problem, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, ClassVar

from cmcsync import _protocol
from cmcsync.cli._checks import (
    OK,
    PROBLEM,
    SKIPPED,
    WARNING,
    Finding,
    check_dns,
    check_key,
    check_proxy,
    check_tcp,
    check_tls,
    check_url_text,
)
from cmcsync.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    Console,
    UsageError,
    advice_for,
    api_key_from,
    duration,
    load_simulator,
    paragraph,
    use_color,
)
from cmcsync.client import Client, ClientState
from cmcsync.config import Backoff, Timeouts
from cmcsync.exceptions import AuthError, CmcsyncError, CmcsyncTimeoutError

__all__ = ["add_parser", "run", "websocket_checks"]

_SIM_KEY = "doctor-key"
_SLOW_PONG = 1.0
_CLOCK_SKEW = 5.0


def add_parser(commands: Any) -> None:
    """Add the ``doctor`` subcommand."""
    p = commands.add_parser(
        "doctor",
        help="check the key, TLS, proxy, reachability and round-trip time; say what to fix",
        description=paragraph(
            "Check everything between this machine and the CMC stream: the API key (never "
            "shown), the URL, proxy variables, DNS, TCP, TLS and its certificate, the "
            "WebSocket handshake with the key, the welcome's ping interval and a JSON ping "
            "round trip. Each line says ok, warning or problem, and what to do. Exit code 0 "
            "when nothing is a problem, 1 otherwise."
        ),
        epilog=(
            "examples:\n"
            "  cmcsync doctor                          the real endpoint, key from "
            "CMC_PRO_API_KEY\n"
            "  cmcsync doctor --simulator              offline, against an embedded simulator\n"
            "  cmcsync doctor --url ws://127.0.0.1:8765/v1 --api-key test-key"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", help=f"the endpoint to check (default: {_protocol.DEFAULT_URL})")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the key to check (default: {_protocol.API_KEY_ENV}); never printed",
    )
    p.add_argument(
        "--simulator",
        action="store_true",
        help="start an embedded simulator and check against it (no key, no network)",
    )
    p.add_argument("--proxy", metavar="URL", help="an HTTP proxy, as `stream --proxy` takes")
    p.add_argument("--allow-insecure", action="store_true", help="accept ws:// to another machine")
    p.add_argument(
        "--timeout",
        type=duration,
        default=5.0,
        metavar="TIME",
        help="the longest wait of each check (default: 5s)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync doctor``; return the exit code."""
    if args.simulator and (args.url or args.api_key):
        raise UsageError(
            "--simulator brings its own URL and key",
            "use --simulator alone, or --url and --api-key without it",
        )
    sim = None
    url: str
    key: str | None
    if args.simulator:
        sim = load_simulator()(api_keys=(_SIM_KEY,), speed=1.0).start()
        url, key, source = sim.url, _SIM_KEY, "the embedded simulator"
    else:
        url = args.url or _protocol.DEFAULT_URL
        key, source = api_key_from(args)
        if key is not None:
            console.secrets.append(key)
    report = Report(sys.stdout)
    try:
        report.title(url, simulated=sim is not None)
        for finding in diagnose(url, key, source, args):
            report.add(finding)
    finally:
        if sim is not None:
            sim.stop()
    return report.finish()


def diagnose(url: str, key: str | None, source: str, args: argparse.Namespace) -> Iterator[Finding]:
    """Run every check in order, yielding each finding as soon as it is known."""
    timeout = args.timeout
    yield check_key(key, source, url)
    found, parts = check_url_text(url, args.allow_insecure)
    yield found
    later = ("proxy", "DNS", "TCP", "TLS", "handshake", "welcome", "ping")
    if parts is None:
        yield from _skip(later, "needs a valid URL")
        return
    found, route = check_proxy(parts, args.proxy)
    yield found
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    found, addresses = check_dns(route, timeout)
    yield found
    if not addresses:
        yield from _skip(later[2:], "needs DNS")
        return
    found, sock = check_tcp(route, addresses, (host, port), timeout)
    yield found
    if sock is None:
        yield from _skip(later[3:], "needs TCP")
        return
    if parts.scheme == "wss":
        found = check_tls(sock, host, timeout)
        yield found
        if found.verdict == PROBLEM:
            yield from _skip(later[4:], "needs TLS")
            return
    else:
        sock.close()
        yield Finding(SKIPPED, "TLS", "ws:// has no TLS")
    if key is None:
        yield from _skip(later[4:], "needs an API key")
        return
    yield from websocket_checks(url, key, timeout, proxy=args.proxy, insecure=args.allow_insecure)


def _skip(checks: tuple[str, ...], why: str) -> Iterator[Finding]:
    for check in checks:
        yield Finding(SKIPPED, check, why)


class _Tap:
    """Collects the frames the doctor's client receives, with their arrival time."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, received_at: float, frame: str | bytes) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            return
        if isinstance(message, dict):
            with self._lock:
                self.frames.append((time.monotonic(), message))
            self.arrived.set()

    def last(self, match: Callable[[dict[str, Any]], bool], since: float) -> dict[str, Any] | None:
        """The latest frame ``match`` accepts among those that arrived after ``since``."""
        with self._lock:
            found = [m for arrived, m in self.frames if arrived >= since and match(m)]
        return found[-1] if found else None

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, client: Client
    ) -> tuple[float, dict[str, Any]] | None:
        """The first frame ``match`` accepts, waiting up to ``timeout``; raises a fatal error."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for arrived, message in self.frames:
                    if match(message):
                        return arrived, message
            if client.state is ClientState.FAILED:
                client.wait(0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.arrived.wait(min(remaining, 0.05))
            self.arrived.clear()


def websocket_checks(
    url: str,
    key: str,
    timeout: float,
    *,
    proxy: str | None = None,
    insecure: bool = False,
) -> Iterator[Finding]:
    """The handshake with the key, the welcome and a JSON ping, through a real client."""
    tap = _Tap()
    client = Client(
        api_key=key,
        url=url,
        autoload=False,
        backoff=Backoff(max_attempts=1),
        timeouts=Timeouts(connect=timeout, close=2.0),
        proxy=proxy,
        allow_insecure=insecure,
    )
    client.tap_frames(tap)
    started = time.monotonic()
    try:
        client.start()
        try:
            client.wait_connected(timeout + 1.0)
            opened = (time.monotonic() - started) * 1000
            welcome = tap.wait_for(lambda m: True, min(timeout, 3.0), client)
        except CmcsyncError as exc:
            yield _handshake_problem(exc)
            yield from _skip(("welcome", "ping"), "needs the handshake")
            return
        yield Finding(OK, "handshake", f"key accepted, WebSocket open in {opened:.0f} ms")
        yield _welcome_finding(welcome)
        try:
            yield _ping(client, tap, timeout)
        except CmcsyncError as exc:
            yield Finding(PROBLEM, "ping", f"the connection failed: {exc}", advice_for(exc))
    finally:
        client.close()


def _handshake_problem(error: CmcsyncError) -> Finding:
    if isinstance(error, AuthError):
        return Finding(
            PROBLEM,
            "handshake",
            f"the server refused the key: {error}",
            "copy the key again from https://pro.coinmarketcap.com/account (no quotes or "
            "spaces); its plan must include the WebSocket API (Startup or above)",
        )
    return Finding(
        PROBLEM,
        "handshake",
        f"no WebSocket: {error}",
        "the host answers but the WebSocket upgrade failed: check the path in --url (/v1) "
        "and that nothing between rewrites the request",
    )


def _welcome_finding(welcome: tuple[float, dict[str, Any]] | None) -> Finding:
    if welcome is None or welcome[1].get("type") != "welcome":
        return Finding(
            WARNING,
            "welcome",
            "no welcome message right after the handshake",
            "nothing to do: cmcsync then pings every 10 s, CMC's usual interval",
        )
    interval = welcome[1].get("ping_interval_ms")
    if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
        return Finding(
            OK,
            "welcome",
            f"ping_interval_ms={interval:g}: cmcsync pings every {interval / 1000:g} s",
        )
    return Finding(
        WARNING,
        "welcome",
        f"welcome without a usable ping_interval_ms ({interval!r})",
        "nothing to do: cmcsync then pings every 10 s",
    )


def _ping(client: Client, tap: _Tap, timeout: float) -> Finding:
    asked = time.monotonic()
    try:
        rtt = client.ping(timeout) * 1000
    except CmcsyncTimeoutError:
        return Finding(
            PROBLEM,
            "ping",
            f"no pong within {timeout:g} s",
            "frames do not come back: a proxy or firewall may hold WebSocket traffic",
        )
    detail = f"pong in {rtt:.0f} ms"
    # The pong carries the server's clock; the tap saw it before ping() returned.
    pong = tap.last(lambda m: m.get("type") == "pong", since=asked)
    server_ms = pong.get("ts") if pong is not None else None
    if isinstance(server_ms, int) and not isinstance(server_ms, bool):
        skew = time.time() - server_ms / 1000 - rtt / 2000
        side = "ahead of" if skew > 0 else "behind"
        detail += f"; this machine's clock is {abs(skew):.1f} s {side} the server's"
        if abs(skew) > _CLOCK_SKEW:
            return Finding(
                WARNING,
                "ping",
                detail,
                "set the clock right (enable NTP): event ages will look wrong",
            )
    if rtt > _SLOW_PONG * 1000:
        return Finding(
            WARNING,
            "ping",
            detail + " (slow)",
            "a slow link delays every event by as much",
        )
    return Finding(OK, "ping", detail)


class Report:
    """Prints findings as they come, then a verdict.

    :param out: where the report goes (stdout: it is the command's output).
    """

    _COLORS: ClassVar[dict[str, str]] = {
        OK: "\x1b[32m",
        WARNING: "\x1b[33m",
        PROBLEM: "\x1b[1;31m",
        SKIPPED: "\x1b[2m",
    }

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.color = use_color(out)
        self.counts = {OK: 0, WARNING: 0, PROBLEM: 0, SKIPPED: 0}

    def _paint(self, verdict: str, text: str) -> str:
        return f"{self._COLORS[verdict]}{text}\x1b[0m" if self.color else text

    def title(self, url: str, *, simulated: bool) -> None:
        """The first line: what is checked."""
        from cmcsync._connection import redact_url

        where = redact_url(url) + (" (embedded simulator)" if simulated else "")
        self._write(f"cmcsync doctor: checking {where}\n")

    def add(self, finding: Finding) -> None:
        """Print one finding, with its advice on the next line when it is not ok."""
        self.counts[finding.verdict] += 1
        verdict = self._paint(finding.verdict, f"{finding.verdict:<8}")
        self._write(f"  {verdict} {finding.check:<10} {finding.detail}")
        if finding.advice and finding.verdict in (WARNING, PROBLEM):
            self._write(f"  {'':<8} {'':<10} → {finding.advice}")

    def finish(self) -> int:
        """Print the verdict; return the exit code (1 when anything is a problem)."""
        problems, warnings = self.counts[PROBLEM], self.counts[WARNING]
        if problems:
            text = (
                f"{problems} problem(s), {warnings} warning(s): fix the problems above "
                "(first one first) and run `cmcsync doctor` again"
            )
            self._write("\n" + self._paint(PROBLEM, text))
            return EXIT_FAILED
        if warnings:
            self._write(f"\nno problem, {warnings} warning(s): cmcsync can stream from here")
        else:
            self._write("\n" + self._paint(OK, "all good: cmcsync can stream from here"))
        return EXIT_OK

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
