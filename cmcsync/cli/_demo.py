"""``cmcsync demo``: live prices from the embedded simulator, no key and no network.

In a terminal it draws a refreshing table on the alternate screen (restored on exit); when
stdout is not a terminal, or with ``--plain``, it prints one line per price update. The
prices reach the table the way they reach any plugin: through the
``cmcsync_on_crypto_latest_price`` hook.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import IO, Any

import attrs

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
    use_color,
)
from cmcsync.cli._faults import FAULT_HELP, FaultSchedule, fault_arg
from cmcsync.cli._screen import Health, Quote, Style, plain_line, render
from cmcsync.client import Client
from cmcsync.config import Backoff, Timeouts
from cmcsync.events import CryptoLatestPrice
from cmcsync.hookspecs import hookimpl

__all__ = ["COINS", "Board", "add_parser", "run"]

#: The coins shown by default: CMC id -> (symbol, name).
COINS: Mapping[int, tuple[str, str]] = {
    1: ("BTC", "Bitcoin"),
    1027: ("ETH", "Ethereum"),
    825: ("USDT", "Tether"),
    52: ("XRP", "XRP"),
    1839: ("BNB", "BNB"),
    5426: ("SOL", "Solana"),
    3408: ("USDC", "USD Coin"),
    74: ("DOGE", "Dogecoin"),
    2010: ("ADA", "Cardano"),
    6636: ("DOT", "Polkadot"),
}

_KEY = "demo-key"
_CHANNEL = "market@crypto_latest_price"
#: Seconds between two pushes of a top coin at speed 1 (CMC: about 5 s).
_CADENCE = 5.0
_FRAME = 0.1
#: Seconds a reconnect or a fault stays mentioned on the screen.
_RECENT = 6.0


def add_parser(commands: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = commands.add_parser(
        "demo",
        help="live prices from the embedded simulator (no key, no network): start here",
        description=paragraph(
            "Start the embedded CMC simulator on 127.0.0.1, subscribe to the latest prices "
            "through a cmcsync Client and show them as a live table with the connection's "
            "health. In a terminal: a refreshing table (q or Ctrl-C quits); otherwise one "
            "line per price update."
        ),
        epilog=(
            "examples:\n"
            "  cmcsync demo\n"
            "  cmcsync demo --speed 20                       faster updates\n"
            "  cmcsync demo --fault every=20s,close=1012     watch it reconnect\n"
            "  cmcsync demo --plain --duration 10 | head     plain lines, for scripts\n\n"
            f"{FAULT_HELP}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=duration, metavar="TIME", help="stop after TIME (10, 30s)")
    p.add_argument(
        "--speed",
        type=positive_float,
        default=5.0,
        help="pushes come X times faster than CMC's ~5 s cadence (default: 5)",
    )
    p.add_argument("--plain", action="store_true", help="plain lines even in a terminal")
    p.add_argument(
        "--crypto-ids",
        metavar="IDS",
        help="CMC ids to show, comma-separated (default: top 10)",
    )
    p.add_argument(
        "--fault",
        action="append",
        type=fault_arg,
        metavar="SPEC",
        help="inject a fault on a schedule, e.g. every=20s,close=1012 (syntax below)",
    )
    p.add_argument("--seed", help="make the simulated prices reproducible")
    p.set_defaults(run=run)


def _coins(text: str | None) -> dict[int, tuple[str, str]]:
    if text is None:
        return dict(COINS)
    coins: dict[int, tuple[str, str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if not part.isdigit() or int(part) == 0:
            raise UsageError(f"--crypto-ids: {part!r} is not a CMC id", "e.g. --crypto-ids 1,1027")
        cid = int(part)
        coins[cid] = COINS.get(cid, (f"#{cid}", ""))
    if not coins:
        raise UsageError("--crypto-ids is empty", "e.g. --crypto-ids 1,1027")
    return coins


class Board:
    """The latest quote per coin and the connection state, kept by hooks.

    Written on the dispatcher thread, read by the drawing loop; :attr:`changed` is set on
    every change.

    :param coins: CMC id -> (symbol, name).
    """

    def __init__(self, coins: Mapping[int, tuple[str, str]]) -> None:
        self._lock = threading.Lock()
        self._quotes = {
            cid: Quote(crypto_id=cid, symbol=symbol, name=name)
            for cid, (symbol, name) in coins.items()
        }
        self._order = list(coins)
        self._fresh: list[int] = []
        self.changed = threading.Event()
        self.state = "connecting"
        #: How the last connection ended (close code and reason).
        self.detail = ""
        #: Monotonic time of the last reconnect, or ``None``.
        self.reconnected_at: float | None = None

    @hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        now = time.monotonic()
        with self._lock:
            old = self._quotes.get(event.crypto_id)
            if old is None:
                return
            price = float(event.price)
            direction, changed = old.direction, old.changed
            if old.price is not None and price != old.price:
                direction, changed = (1 if price > old.price else -1), now
            self._quotes[event.crypto_id] = attrs.evolve(
                old,
                price=price,
                change_24h=_or(event.percent_change_24h, old.change_24h),
                volume_24h=_or(event.volume_24h, old.volume_24h),
                market_cap=_or(event.market_cap, old.market_cap),
                direction=direction,
                updated=now,
                changed=changed,
                history=(*old.history, price)[-32:],
            )
            self._fresh.append(event.crypto_id)
        self.changed.set()

    @hookimpl
    def cmcsync_on_connect(self, reconnect: bool) -> None:
        self.state = "connected"
        if reconnect:
            self.reconnected_at = time.monotonic()
        self.changed.set()

    @hookimpl
    def cmcsync_on_disconnect(self, code: int | None, reason: str, will_reconnect: bool) -> None:
        self.state = "reconnecting" if will_reconnect else "failed"
        self.detail = describe_close(code, reason)
        self.changed.set()

    def quotes(self) -> list[Quote]:
        """Every coin, largest market cap first (coins without one keep their given order)."""
        with self._lock:
            quotes = [self._quotes[cid] for cid in self._order]
        ranked = sorted(
            enumerate(quotes),
            key=lambda item: (
                item[1].market_cap is None,
                -(item[1].market_cap or 0),
                item[0],
            ),
        )
        return [quote for _, quote in ranked]

    def take_fresh(self) -> list[Quote]:
        """The quotes updated since the last call, in update order."""
        with self._lock:
            fresh = [self._quotes[cid] for cid in self._fresh]
            self._fresh.clear()
        return fresh


def _or(value: Any, old: float | None) -> float | None:
    return old if value is None else float(value)


class _Rate:
    """Events per second over the last few seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, total: int) -> float:
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        first_t, first_n = self.samples[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0


def _health(board: Board, client: Client, rate: float, now: float) -> Health:
    stats = client.stats()
    subs = stats["subscriptions"]
    detail = board.detail
    if board.state == "connected":
        back = board.reconnected_at
        # A reconnect takes a fraction of a second: say so for a while, or no one sees it.
        recent = back is not None and now - back < _RECENT
        detail = f"reconnected after {board.detail}" if recent else ""
    return Health(
        state=board.state,
        detail=detail,
        active=subs.get("active", 0),
        wanted=sum(subs.values()),
        rate=rate,
        events=stats["events"],
        reconnects=stats["reconnects"],
        malformed=stats["malformed"],
        url=stats["url"],
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync demo``; return the exit code."""
    coins = _coins(args.crypto_ids)
    simulator_class = load_simulator()
    fancy = not args.plain and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    board = Board(coins)
    stop = threading.Event()
    try:
        sim = simulator_class(api_keys=(_KEY,), speed=args.speed, seed=args.seed).start()
    except OSError as exc:
        raise CommandError(
            f"cannot start the embedded simulator on 127.0.0.1: {exc}",
            "check that this machine allows local connections (loopback)",
        ) from None
    client = Client(
        api_key=_KEY,
        url=sim.url,
        autoload=False,
        plugins=[board],
        backoff=Backoff(base=0.2, cap=2.0),
        timeouts=Timeouts(pong=3.0, close=2.0),
    )
    started = time.monotonic()
    notices: list[str] = []
    schedule = FaultSchedule(args.fault or (), sim, notices.append, started)
    deadline = None if args.duration is None else started + args.duration
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        client.subscribe(_CHANNEL, wait=False, crypto_ids=list(coins))
        if fancy:
            _run_screen(board, client, schedule, notices, stop, deadline, args.speed)
        else:
            _run_lines(board, client, schedule, notices, stop, deadline, console, sim.url)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        schedule.stop()
        client.close()
        sim.stop()
    stats = client.stats()
    elapsed = time.monotonic() - started
    console.say(
        f"demo over: {stats['events']} price updates for {len(coins)} coins in {elapsed:.0f} s, "
        f"{stats['reconnects']} reconnect(s)."
    )
    console.say(
        "next: `cmcsync stream --help` (real data, needs a key) · "
        "`cmcsync simulate` (this simulator as a server)"
    )
    return EXIT_OK


def _run_lines(
    board: Board,
    client: Client,
    schedule: FaultSchedule,
    notices: list[str],
    stop: threading.Event,
    deadline: float | None,
    console: Console,
    url: str,
) -> None:
    out = sys.stdout
    console.say(f"cmcsync demo: live prices from the embedded simulator at {url}; Ctrl-C stops")
    while not stop.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        schedule.run_due(now)
        for notice in notices:
            console.say(notice)
        notices.clear()
        for quote in board.take_fresh():
            out.write(plain_line(quote) + "\n")
        out.flush()
        client.wait(0)
        wait = _FRAME * 3 if deadline is None else min(_FRAME * 3, max(deadline - now, 0.0))
        board.changed.wait(wait)
        board.changed.clear()


def _run_screen(
    board: Board,
    client: Client,
    schedule: FaultSchedule,
    notices: list[str],
    stop: threading.Event,
    deadline: float | None,
    speed: float,
) -> None:
    style = Style(use_color(sys.stdout))
    stale_after = 3 * _CADENCE / speed + 1.0
    rate = _Rate()
    shown: tuple[str, float] | None = None
    with _Terminal(sys.stdout) as term:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            schedule.run_due(now)
            health = _health(board, client, rate.add(now, client.stats()["events"]), now)
            size = shutil.get_terminal_size((100, 30))
            lines = render(
                board.quotes(),
                health,
                width=size.columns,
                height=size.lines - 1,
                style=style,
                stale_after=stale_after,
                now=now,
            )
            if notices:
                shown = (notices[-1], now)
                notices.clear()
            if shown is not None and now - shown[1] < _RECENT:
                lines.append(style.yellow(" " + shown[0][: size.columns - 2]))
            term.draw(lines[: size.lines - 1])
            if term.key(_FRAME) in ("q", "Q"):
                return


class _Terminal:
    """The alternate screen, a hidden cursor, no echo; all restored on exit.

    :param out: the terminal's output stream.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.resized = threading.Event()
        self._fd: int | None = None
        self._saved: Any = None
        self._previous_winch: Any = None

    def __enter__(self) -> _Terminal:
        if sys.stdin.isatty():
            with contextlib.suppress(ImportError, OSError):
                import termios
                import tty

                self._fd = sys.stdin.fileno()
                self._saved = termios.tcgetattr(self._fd)
                # cbreak keeps Ctrl-C working (ISIG) and stops typed keys from echoing.
                tty.setcbreak(self._fd)
        if hasattr(signal, "SIGWINCH"):
            self._previous_winch = signal.signal(signal.SIGWINCH, self._on_resize)
        self.out.write("\x1b[?1049h\x1b[?25l\x1b[2J")
        self.out.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            self.out.flush()
        if self._fd is not None and self._saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        if hasattr(signal, "SIGWINCH"):
            signal.signal(signal.SIGWINCH, self._previous_winch or signal.SIG_DFL)

    def _on_resize(self, signum: int, frame: FrameType | None) -> None:
        self.resized.set()

    def draw(self, lines: list[str]) -> None:
        """Redraw the screen in place (cleared first after a resize)."""
        clear = "\x1b[2J" if self.resized.is_set() else ""
        self.resized.clear()
        self.out.write(clear + "\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()

    def key(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` for a key press; the key, or ``None``."""
        if self._fd is None:
            self.resized.wait(timeout)
            return None
        try:
            ready, _, _ = select.select([self._fd], [], [], timeout)
        except (OSError, ValueError):
            return None
        if not ready:
            return None
        return os.read(self._fd, 32).decode("utf-8", "replace")[-1:] or None
