"""``cmcsync simulate``: the CMC simulator as a standalone server, with faults on a schedule."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from cmcsync._connection import is_loopback
from cmcsync._protocol import describe_close
from cmcsync.cli._common import (
    EXIT_OK,
    CommandError,
    Console,
    UsageError,
    duration,
    load_simulator,
    paragraph,
    positive_float,
    positive_int,
)
from cmcsync.cli._faults import FAULT_HELP, Fault, FaultSchedule, fault_arg
from cmcsync.exceptions import ConfigError

__all__ = ["Monitor", "add_parser", "run"]

#: The key the simulator accepts when no --key is given.
DEFAULT_KEY = "test-key"
DEFAULT_PORT = 8765

_SETTING_FLAGS = {
    "port": "--port",
    "sub_limit": "--sub-limit",
    "max_connections": "--max-connections",
    "speed": "--speed",
    "key_status": "--key-status",
    "ping_interval_ms": "--ping-interval",
}

_EXAMPLES = """\
examples:
  cmcsync simulate                                  ws://127.0.0.1:8765/v1, key test-key
  cmcsync simulate --port 0 --speed 10              a free port, data 10 times faster
  cmcsync simulate --key-status old-key=4101        old-key gets close 4101 (key disabled)
  cmcsync simulate --fault every=30s,close=1012 --fault at=45s,silence=20s
"""


def add_parser(commands: Any) -> None:
    """Add the ``simulate`` subcommand."""
    p = commands.add_parser(
        "simulate",
        help="run the CMC simulator as a local server, to test your own app against it",
        description=paragraph(
            "Run the embedded CMC simulator as a WebSocket server: the CMC protocol (welcome, "
            "acks, errors, close codes), data for all ten channels, and faults on a schedule. "
            "It prints its URL and runs until Ctrl-C or SIGTERM. Activity goes to stderr."
        ),
        epilog=f"{FAULT_HELP}\n{_EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = p.add_argument_group("server")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="local address to listen on (default: %(default)s, this machine only)",
    )
    net.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    keys = p.add_argument_group("keys")
    keys.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help=f"an accepted API key; repeat for more (default: {DEFAULT_KEY})",
    )
    keys.add_argument("--any-key", action="store_true", help="accept any non-empty key")
    keys.add_argument(
        "--key-status",
        action="append",
        type=_key_status,
        metavar="KEY=CODE",
        help="close connections with KEY right after the handshake with CODE: "
        "4100 invalid, 4101 disabled, 4102 plan without WebSocket",
    )
    behaviour = p.add_argument_group("behaviour")
    behaviour.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        help="run the market clock X times faster (default: 1, CMC's real cadence)",
    )
    behaviour.add_argument(
        "--sub-limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="subscriptions per connection; one more gets error 2303 (default: 100)",
    )
    behaviour.add_argument(
        "--max-connections",
        type=positive_int,
        default=10,
        metavar="N",
        help="connections per key; one more gets close 4004 (default: 10)",
    )
    behaviour.add_argument(
        "--ping-interval",
        type=duration,
        default=10.0,
        metavar="TIME",
        help="the welcome's ping_interval_ms (default: 10s)",
    )
    behaviour.add_argument(
        "--no-welcome", action="store_true", help="send no welcome message on connect"
    )
    behaviour.add_argument("--seed", help="make the generated data reproducible")
    behaviour.add_argument(
        "--fault",
        action="append",
        type=fault_arg,
        metavar="SPEC",
        help="a fault on a schedule, e.g. every=30s,close=1012 (syntax below)",
    )
    behaviour.add_argument(
        "--duration",
        type=duration,
        metavar="TIME",
        help="stop after TIME (default: never)",
    )
    behaviour.add_argument(
        "--quiet", action="store_true", help="print only the URL, no activity on stderr"
    )
    p.set_defaults(run=run)


def _key_status(text: str) -> tuple[str, int]:
    key, sep, code = text.rpartition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=CODE such as old-key=4101, got {text!r}")
    try:
        value = int(code)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{code!r} is not a close code; use 4100, 4101, 4102 or another 3000-4999"
        ) from None
    if not 3000 <= value <= 4999:
        raise argparse.ArgumentTypeError(
            f"{value} cannot refuse a key; use 4100 (invalid), 4101 (disabled), "
            "4102 (plan) or another code from 3000 to 4999"
        )
    return key.strip(), value


class Monitor:
    """Reports what happens on a simulator: connections, subscriptions, refusals.

    :param simulator: the simulator to watch.
    :param report: called with each line.
    :param start: the monotonic time the timestamps count from.
    """

    def __init__(self, simulator: Any, report: Callable[[str], None], start: float) -> None:
        self._sim = simulator
        self._report = report
        self._start = start
        self._subs: dict[int, int] = {}
        self._done: set[int] = set()
        self._handshakes = 0

    def poll(self) -> None:
        """Report every change since the last call."""
        now = time.monotonic()
        handshakes = self._sim.handshakes
        for record in handshakes[self._handshakes :]:
            if record.status != 101:
                self._say(now, f"handshake refused with HTTP {record.status} ({record.path})")
        self._handshakes = len(handshakes)
        for conn in self._sim.all_connections():
            if conn.id in self._done:
                continue
            closed, code = conn.closed, conn.close_code
            if conn.id not in self._subs:
                self._subs[conn.id] = 0
                if closed and code is not None and code >= 4000:
                    self._say(now, f"connection {conn.id} refused: {describe_close(code)}")
                    self._done.add(conn.id)
                    continue
                self._say(now, f"connection {conn.id} opened")
            count = len(conn.subscriptions)
            if count != self._subs[conn.id] and not closed:
                self._say(now, f"connection {conn.id}: {count} subscription(s)")
                self._subs[conn.id] = count
            if closed:
                self._say(now, f"connection {conn.id} closed: {describe_close(code)}")
                self._done.add(conn.id)

    def _say(self, now: float, text: str) -> None:
        self._report(f"[{now - self._start:7.1f}s] {text}")


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync simulate``; return the exit code."""
    simulator_class = load_simulator()
    keys = None if args.any_key else tuple(args.key or (DEFAULT_KEY,))
    try:
        sim = simulator_class(
            host=args.host,
            port=args.port,
            api_keys=keys,
            key_status=dict(args.key_status or ()),
            sub_limit=args.sub_limit,
            max_connections=args.max_connections,
            ping_interval_ms=None if args.no_welcome else max(int(args.ping_interval * 1000), 1),
            speed=args.speed,
            seed=args.seed,
        )
    except ConfigError as exc:
        flag = _SETTING_FLAGS.get(exc.param or "", "")
        raise UsageError(f"{flag}: {exc}" if flag else str(exc), "see --help") from None
    try:
        sim.start()
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            "pick another port with --port (--port 0 picks a free one), or a local address "
            "with --host",
        ) from None
    stop = threading.Event()
    previous = _on_sigterm(stop)
    start = time.monotonic()
    say: Callable[[str], None] = (lambda text: None) if args.quiet else console.say
    schedule = FaultSchedule(args.fault or (), sim, say, start)
    monitor = Monitor(sim, say, start)
    try:
        _banner(sim, args, keys, args.fault or ())
        deadline = None if args.duration is None else start + args.duration
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            schedule.run_due(now)
            monitor.poll()
            wake = [now + 0.2]
            due = schedule.next_due()
            if due is not None:
                wake.append(due)
            if deadline is not None:
                wake.append(deadline)
            stop.wait(max(min(wake) - time.monotonic(), 0.0))
    except KeyboardInterrupt:
        pass
    finally:
        schedule.stop()
        sim.stop()
        monitor.poll()  # what happened since the last look, and the final closes
        signal.signal(signal.SIGTERM, previous)
        if not args.quiet:
            console.say("simulator stopped")
    return EXIT_OK


def _on_sigterm(stop: threading.Event) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return signal.signal(signal.SIGTERM, handler)


def _banner(sim: Any, args: argparse.Namespace, keys: tuple[str, ...] | None, faults: Any) -> None:
    url = sim.url
    out = sys.stdout
    if keys is None:
        key_text, example_key = "any non-empty key", "anything"
    elif args.key is None:
        key_text, example_key = DEFAULT_KEY, DEFAULT_KEY
    else:
        # Keys given on the command line are the user's; they are not printed back.
        key_text, example_key = f"{len(keys)} given with --key", "KEY"
    insecure = "" if is_loopback(args.host) else " --allow-insecure"
    lines = [
        f"cmcsync simulator listening on {url}",
        f"  API keys accepted: {key_text}",
        (
            f"  speed x{args.speed:g}, {args.sub_limit} subscriptions per connection, "
            f"{args.max_connections} connections per key"
        ),
    ]
    lines.extend(f"  fault: {_describe(fault)}" for fault in faults)
    lines += [
        "try it in another terminal:",
        (
            f"  cmcsync stream crypto_latest_price --crypto-ids 1,1027 --url {url} "
            f"--api-key {example_key}{insecure}"
        ),
        "Ctrl-C stops the simulator.",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
    if not is_loopback(args.host):
        sys.stderr.write(
            f"cmcsync simulate: warning: listening on {args.host}: other machines that reach "
            "this address can connect\n"
        )


def _describe(fault: Fault) -> str:
    if fault.every is None:
        when = f"at {fault.first:g} s"
    else:
        when = f"every {fault.every:g} s from {fault.first:g} s"
        if fault.times is not None:
            when += f", {fault.times} time(s)"
    return f"{fault.spec}  ({when})"
