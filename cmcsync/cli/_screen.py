"""What ``cmcsync demo`` draws: the quote board, as a refreshing terminal table or plain lines.

:class:`Quote` and :class:`Health` are snapshots; :func:`render` turns them into the lines of
one screen for a given terminal size, choosing the columns that fit (the coin, its price and
24 h change always; rank, name, volume, market cap, trend and age as width allows).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Health", "Quote", "Style", "plain_line", "render", "visible_cut"]

_SPARK = "▁▂▃▄▅▆▇█"
#: Seconds a changed price stays highlighted.
FLASH_SECONDS = 0.35


@attrs.frozen(kw_only=True)
class Quote:
    """One coin as last heard of; numbers are the last values the server sent.

    :param crypto_id: the CMC id.
    :param symbol: ticker, e.g. ``BTC``.
    :param name: display name.
    :param price: USD price, or ``None`` before the first update.
    :param change_24h: price change over 24 h, %.
    :param volume_24h: USD volume over 24 h.
    :param market_cap: USD market cap.
    :param direction: +1 if the last price change was up, -1 if down, 0 before any.
    :param updated: monotonic time of the last update, or ``None``.
    :param changed: monotonic time of the last price change, or ``None``.
    :param history: the last prices, oldest first.
    """

    crypto_id: int
    symbol: str
    name: str
    price: float | None = None
    change_24h: float | None = None
    volume_24h: float | None = None
    market_cap: float | None = None
    direction: int = 0
    updated: float | None = None
    changed: float | None = None
    history: tuple[float, ...] = ()


@attrs.frozen(kw_only=True)
class Health:
    """The connection line under the table.

    :param state: ``connected``, ``connecting``, ``reconnecting`` or ``failed``.
    :param detail: why, when not connected (the close code and reason).
    :param active: subscriptions acknowledged by the server.
    :param wanted: subscriptions asked for.
    :param rate: events per second, recently.
    :param events: events received in all.
    :param reconnects: reconnections so far.
    :param malformed: frames skipped as malformed.
    :param url: the server's URL.
    """

    state: str
    detail: str = ""
    active: int = 0
    wanted: int = 0
    rate: float = 0.0
    events: int = 0
    reconnects: int = 0
    malformed: int = 0
    url: str = ""


class Style:
    """ANSI styling, or none (``color=False``): every method returns text of the same width."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def _wrap(self, codes: str, text: str) -> str:
        return f"\x1b[{codes}m{text}\x1b[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)

    def title(self, text: str) -> str:
        return self._wrap("1;97;44", text)

    def flash(self, up: bool, text: str) -> str:
        return self._wrap("1;30;42" if up else "1;97;41", text)

    def signed(self, value: float | None, text: str) -> str:
        if value is None or value == 0:
            return text
        return self.green(text) if value > 0 else self.red(text)


def price_text(value: float | None) -> str:
    """``$80,056.12``, ``$2.2104``, ``$0.179501``: enough digits to see the price move."""
    if value is None:
        return "—"
    size = abs(value)
    if size >= 100:
        return f"${value:,.2f}"
    return f"${value:,.4f}" if size >= 1 else f"${value:.6f}"


def money_text(value: float | None) -> str:
    """``$1.59T``, ``$42.81B``, ``$403.60M``; a dash when unknown."""
    if value is None:
        return "—"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"${value / limit:,.2f}{suffix}"
    return f"${value:,.2f}"


def pct_text(value: float | None) -> str:
    """``+2.09%``; a dash when unknown."""
    return "—" if value is None else f"{value:+.2f}%"


def spark(values: Sequence[float], width: int) -> str:
    """A sparkline of the last ``width`` values, flat in the middle when they do not move."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    low, high = min(tail), max(tail)
    if high - low <= abs(high) * 1e-9:
        return _SPARK[3] * len(tail)
    top = len(_SPARK) - 1
    return "".join(_SPARK[round((v - low) / (high - low) * top)] for v in tail)


def _age(quote: Quote, now: float) -> float | None:
    return None if quote.updated is None else max(now - quote.updated, 0.0)


# A column: title, width, right-aligned, priority (lower is kept first), and the cell:
# (quote, rank, now, style, stale_after) -> styled text of exactly ``width`` columns.
_Cell = Callable[[Quote, int, float, Style, float], str]


@attrs.frozen
class _Column:
    title: str
    width: int
    right: bool
    priority: int
    cell: _Cell


def _pad(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.rjust(width) if right else text.ljust(width)


def _rank(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return s.dim(_pad(str(rank), 3, True))


def _symbol(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return s.bold(_pad(q.symbol, 6, False))


def _name(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return s.dim(_pad(q.name, 10, False))


def _price(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    if q.price is None:
        return s.dim(_pad("waiting…", 16, True))
    arrow = {1: "▲", -1: "▼"}.get(q.direction, " ")
    text = _pad(price_text(q.price), 14, True)
    flashing = q.changed is not None and now - q.changed < FLASH_SECONDS and q.direction != 0
    body = s.flash(q.direction > 0, text) if flashing else s.bold(text)
    mark = s.green(arrow) if q.direction > 0 else s.red(arrow) if q.direction < 0 else arrow
    return f"{body} {mark}"


def _change(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return s.signed(q.change_24h, _pad(pct_text(q.change_24h), 9, True))


def _volume(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return _pad(money_text(q.volume_24h), 12, True)


def _cap(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    return _pad(money_text(q.market_cap), 12, True)


def _trend(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    line = _pad(spark(q.history, 16), 16, False)
    first, last = (q.history[0], q.history[-1]) if q.history else (0.0, 0.0)
    return s.signed(last - first, line)


def _updated(q: Quote, rank: int, now: float, s: Style, stale: float) -> str:
    age = _age(q, now)
    if age is None:
        return s.dim(_pad("—", 8, True))
    text = _pad(f"{age:.1f}s ago", 8, True)
    return s.yellow(text) if age > stale else s.dim(text)


_COLUMNS: tuple[_Column, ...] = (
    _Column("#", 3, True, 5, _rank),
    _Column("COIN", 6, False, 0, _symbol),
    _Column("NAME", 10, False, 6, _name),
    _Column("PRICE", 16, True, 0, _price),
    _Column("24H", 9, True, 0, _change),
    _Column("VOLUME 24H", 12, True, 3, _volume),
    _Column("MARKET CAP", 12, True, 2, _cap),
    _Column("TREND", 16, False, 4, _trend),
    _Column("UPDATED", 8, True, 1, _updated),
)
_GAP = "  "


def _fit(width: int) -> list[_Column]:
    chosen: set[int] = set()
    used = 0
    for index in sorted(range(len(_COLUMNS)), key=lambda i: _COLUMNS[i].priority):
        extra = _COLUMNS[index].width + (len(_GAP) if chosen else 0)
        if used + extra > width - 2 and _COLUMNS[index].priority > 0:
            continue
        chosen.add(index)
        used += extra
    return [column for i, column in enumerate(_COLUMNS) if i in chosen]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render(
    quotes: Sequence[Quote],
    health: Health,
    *,
    width: int,
    height: int,
    style: Style,
    stale_after: float,
    now: float | None = None,
) -> list[str]:
    """The lines of one screen, none wider than ``width`` columns, at most ``height`` lines.

    :param quotes: the coins, in display order.
    :param health: the connection line.
    :param stale_after: seconds after which an update's age is shown as late.
    """
    now = time.monotonic() if now is None else now
    s = style
    columns = _fit(width)
    table_width = sum(c.width for c in columns) + len(_GAP) * (len(columns) - 1)
    rule_width = min(max(table_width + 2, 40), width)
    clock = time.strftime("%H:%M:%S")
    title = " cmcsync demo "
    subtitle = " live CoinMarketCap prices from the embedded simulator "
    pad = max(rule_width - len(title) - len(subtitle) - len(clock) - 1, 1)
    if len(title) + len(subtitle) + len(clock) + 2 > rule_width:
        subtitle = ""
        pad = max(rule_width - len(title) - len(clock) - 1, 1)
    lines = [
        s.title(title) + s.dim(subtitle) + " " * pad + s.dim(clock),
        "",
        " " + _GAP.join(s.bold(_pad(c.title, c.width, c.right)) for c in columns),
        s.dim("─" * rule_width),
    ]
    for rank, quote in enumerate(quotes, 1):
        lines.append(" " + _GAP.join(c.cell(quote, rank, now, s, stale_after) for c in columns))
    lines.append(s.dim("─" * rule_width))
    lines.append(_health_line(health, s, width))
    lines.append(
        s.dim(
            _cut(
                " q or Ctrl-C quits · simulated data: no key, no network · "
                "real data: cmcsync stream --help",
                width,
            )
        )
    )
    lines = [visible_cut(line, width) for line in lines]
    if len(lines) > height:
        # Keep the title, the header and the health line; drop table rows from the bottom.
        keep_rows = max(height - 7, 0)
        lines = lines[: 4 + keep_rows] + lines[4 + len(quotes) :]
        lines = lines[:height]
    return lines


_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def visible_cut(line: str, width: int) -> str:
    """``line`` cut to ``width`` visible columns; escape sequences are kept and not counted."""
    out: list[str] = []
    shown = 0
    position = 0
    cut = False
    while position < len(line):
        match = _ESCAPE.match(line, position)
        if match:
            out.append(match.group())
            position = match.end()
            continue
        if shown >= width:
            cut = True
            position += 1
            continue
        out.append(line[position])
        shown += 1
        position += 1
    if cut:
        out.append("\x1b[0m")
    return "".join(out)


def _health_line(h: Health, s: Style, width: int) -> str:
    if h.state == "connected":
        dot, state = s.green("●"), s.green("connected")
    elif h.state == "failed":
        dot, state = s.red("●"), s.red("stopped")
    else:
        dot, state = s.yellow("●"), s.yellow(h.state + "…")
    plain_state = (
        "connected"
        if h.state == "connected"
        else ("stopped" if h.state == "failed" else h.state + "…")
    )
    parts = [
        f"{h.active}/{h.wanted} subscriptions active",
        f"{h.rate:.1f} events/s",
        f"{h.events} events",
        f"{h.reconnects} reconnect{'s' if h.reconnects != 1 else ''}",
        f"{h.malformed} malformed",
    ]
    if h.detail:
        parts.insert(0, h.detail)
    parts.append(h.url)
    note = ""
    if h.detail and h.state == "connected":
        note = parts.pop(0)
    budget = width - len(plain_state) - 5 - (len(note) + 3 if note else 0)
    tail = ""
    for part in parts:
        piece = (" · " if tail else "") + part
        if len(tail) + len(piece) > budget:
            break
        tail += piece
    lead = f" {dot} {state}  " + (s.yellow(note) + s.dim(" · ") if note else "")
    return lead + s.dim(tail)


def plain_line(quote: Quote) -> str:
    """One line per update for pipes and logs."""
    arrow = {1: "▲", -1: "▼"}.get(quote.direction, " ")
    stamp = time.strftime("%H:%M:%S")
    return (
        f"{stamp}  {quote.symbol:<5} {price_text(quote.price):>14} {arrow} "
        f"{pct_text(quote.change_24h):>8}  vol {money_text(quote.volume_24h):>10}  "
        f"mcap {money_text(quote.market_cap):>10}"
    )
