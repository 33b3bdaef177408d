"""``cmcsync demo``: live prices from the embedded simulator, no key and no network."""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from typing import Any, TextIO

from cmcsync.cli._common import EXIT_OK, say
from cmcsync.events import Event
from cmcsync.hookspecs import hookimpl

#: The coins the demo shows: CMC id -> symbol.
COINS = {
    1: "BTC",
    1027: "ETH",
    1839: "BNB",
    5426: "SOL",
    52: "XRP",
    2010: "ADA",
    74: "DOGE",
    6636: "DOT",
    825: "USDT",
    3408: "USDC",
}

_DEMO_KEY = "demo-key"


def add_parser(commands: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = commands.add_parser(
        "demo",
        help="live prices from the embedded simulator (no key, no network)",
        description=(
            "Start the embedded CMC simulator on 127.0.0.1, stream latest prices from it and "
            "show them as a live table. Ctrl-C exits."
        ),
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument(
        "--speed",
        type=float,
        default=5.0,
        help="simulator speed factor: pushes come this many times faster (default: 5)",
    )
    p.add_argument("--plain", action="store_true", help="plain lines even in a terminal")
    p.set_defaults(run=run)


class _Board:
    """The latest price event per coin, filled by the dispatcher thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest: dict[int, Event] = {}
        self.updated: dict[int, float] = {}
        self.previous_price: dict[int, Any] = {}
        self.changed = threading.Event()
        self.events = 0
        self.connected = False
        self.reconnects = 0

    @hookimpl
    def cmcsync_on_crypto_latest_price(self, event: Event) -> None:
        cid = _field(event, "crypto_id", "cid")
        if cid is None:
            cid = event.params.get("crypto_ids")
        with self.lock:
            old = self.latest.get(cid)
            if old is not None:
                self.previous_price[cid] = _field(old, "price", "p")
            self.latest[cid] = event
            self.updated[cid] = time.monotonic()
            self.events += 1
        self.changed.set()

    @hookimpl
    def cmcsync_on_connect(self, reconnect: bool) -> None:
        self.connected = True
        self.reconnects += int(reconnect)
        self.changed.set()

    @hookimpl
    def cmcsync_on_disconnect(self) -> None:
        self.connected = False
        self.changed.set()


def _field(event: Event, name: str, wire: str) -> Any:
    value = getattr(event, name, None)
    if value is None:
        value = event.extra.get(wire) if isinstance(event.extra, dict) else None
    return value


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``cmcsync demo``."""
    from cmcsync.client import Client
    from cmcsync.testing import Simulator

    board = _Board()
    fancy = sys.stdout.isatty() and not args.plain
    simulator = Simulator(api_keys=(_DEMO_KEY,), speed=args.speed)
    simulator.start()
    client = Client(api_key=_DEMO_KEY, url=simulator.url, autoload=False, plugins=[board])
    if not fancy:
        say(f"simulator listening on {simulator.url}")
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        client.subscribe("market@crypto_latest_price", crypto_ids=list(COINS))
        view = _Screen(sys.stdout) if fancy else _Lines(sys.stdout)
        while deadline is None or time.monotonic() < deadline:
            board.changed.wait(0.5)
            board.changed.clear()
            view.draw(board, client.stats())
            client.wait(0)
    except KeyboardInterrupt:
        pass
    finally:
        if fancy:
            sys.stdout.write("\x1b[?25h\n")
        client.close()
        simulator.stop()
    return EXIT_OK


def _money(value: Any) -> str:
    if value is None:
        return "—"
    number = float(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(number) >= limit:
            return f"${number / limit:,.2f}{suffix}"
    return f"${number:,.2f}"


def _price(value: Any) -> str:
    if value is None:
        return "—"
    number = float(value)
    return f"${number:,.2f}" if number >= 1 else f"${number:.6f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):+.2f}%"


def _row(board: _Board, cid: int, now: float) -> tuple[str, str, str, str, str, str, Any]:
    event = board.latest.get(cid)
    if event is None:
        return (COINS[cid], "…", "", "", "", "", None)
    change = _field(event, "percent_change_24h", "p24h")
    return (
        COINS[cid],
        _price(_field(event, "price", "p")),
        _pct(change),
        _money(_field(event, "volume_24h", "vu")),
        _money(_field(event, "market_cap", "mc")),
        f"{now - board.updated[cid]:.1f}s",
        change,
    )


class _Lines:
    """Plain output for pipes and logs: one line per price update."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.seen: dict[int, int] = {}

    def draw(self, board: _Board, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        with board.lock:
            fresh = [cid for cid, ev in board.latest.items() if self.seen.get(cid) != ev.ts]
            for cid in fresh:
                self.seen[cid] = board.latest[cid].ts
                symbol, price, change, volume, cap, _, _ = _row(board, cid, now)
                stamp = time.strftime("%H:%M:%S")
                self.out.write(
                    f"{stamp} {symbol:<5} {price:>14} {change:>8}  vol {volume:>10}  mcap {cap:>10}\n"
                )
        self.out.flush()


class _Screen:
    """A refreshing table for a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        out.write("\x1b[?25l\x1b[2J")

    def draw(self, board: _Board, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        width = min(shutil.get_terminal_size((80, 24)).columns, 100)
        bold, dim, reset = "\x1b[1m", "\x1b[2m", "\x1b[0m"
        green, red = "\x1b[32m", "\x1b[31m"
        lines = [
            f"{bold}cmcsync demo{reset}  {dim}live CoinMarketCap latest prices · embedded simulator · Ctrl-C to quit{reset}",
            "",
            f"{bold}{'COIN':<6}{'PRICE':>16}{'24H':>10}{'VOLUME 24H':>14}{'MARKET CAP':>14}{'AGE':>8}{reset}",
            dim + "─" * min(width, 68) + reset,
        ]
        with board.lock:
            for cid in COINS:
                symbol, price, change, volume, cap, age, raw = _row(board, cid, now)
                colour = green if raw is not None and float(raw) >= 0 else red if raw else ""
                lines.append(
                    f"{bold}{symbol:<6}{reset}{price:>16}{colour}{change:>10}{reset}"
                    f"{volume:>14}{cap:>14}{dim}{age:>8}{reset}"
                )
        subs = stats["subscriptions"]
        state = f"{green}● connected{reset}" if board.connected else f"{red}● reconnecting{reset}"
        lines += [
            "",
            f"{state}  {dim}subscriptions {subs['active']}/{sum(subs.values())} active · "
            f"{stats['events']} events · {stats['reconnects']} reconnects · "
            f"{stats['malformed']} malformed · {stats['url']}{reset}",
        ]
        self.out.write("\x1b[H" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J")
        self.out.flush()
