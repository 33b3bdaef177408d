"""How ``stream`` and ``replay`` print events: JSON lines, or one aligned line per event."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import IO, Any

from cmcsync._codec import Codec
from cmcsync.channels import CHANNELS
from cmcsync.events import Event

__all__ = ["FORMATS", "Writer", "event_record", "make_writer"]

#: The values of ``--format``.
FORMATS = ("table", "jsonl")

#: Prints one event.
Writer = Callable[[Event], None]


def event_record(event: Event, codec: Codec) -> dict[str, Any]:
    """The JSON object ``--format jsonl`` prints for one event (the contract in the docs)."""
    return {
        "channel": event.channel,
        "params": dict(event.params),
        "ts": event.ts,
        "data": codec.to_dict(event),
    }


def make_writer(fmt: str, codec: Codec, out: IO[str]) -> Writer:
    """A function that prints one event in ``fmt`` on ``out`` and flushes.

    :param fmt: ``"jsonl"`` or ``"table"``.
    """
    if fmt == "jsonl":

        def write_jsonl(event: Event) -> None:
            out.write(json.dumps(event_record(event, codec), separators=(",", ":")) + "\n")
            out.flush()

        return write_jsonl

    isatty = getattr(out, "isatty", None)
    terminal = bool(isatty and isatty())

    def write_table(event: Event) -> None:
        # In a terminal a line stops at its width; piped, it carries every field.
        width = shutil.get_terminal_size().columns if terminal else None
        out.write(table_line(event, codec, width) + "\n")
        out.flush()

    return write_table


def table_line(event: Event, codec: Codec, width: int | None = None) -> str:
    """One human line: UTC push time, channel, subject, then ``field=value`` pairs.

    Fields that only repeat the subscription (the id or address of the subject) and
    missing values are left out; numbers are shortened for reading, ``--format jsonl``
    keeps them exact.

    :param width: cut the line to this many columns (ending in ``…``), or ``None``.
    """
    row = CHANNELS.get(event.channel)
    short = row.short if row is not None else event.channel
    subject = str(event.params.get(row.list_param, "")) if row is not None else ""
    if len(subject) > 14:
        subject = f"{subject[:6]}…{subject[-6:]}"
    echoed = {str(v) for v in event.params.values()}
    pairs = []
    for name, value in codec.to_dict(event).items():
        if value is None or value == {} or str(value) in echoed:
            continue
        pairs.append(f"{name}={_show(value)}")
    millis = event.ts % 1000
    stamp = time.strftime("%H:%M:%S", time.gmtime(event.ts // 1000)) + f".{millis:03d}"
    line = f"{stamp}  {short:<20} {subject:<14} {' '.join(pairs)}"
    if width is not None and len(line) > width:
        line = line[: max(width - 1, 0)] + "…"
    return line


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        # Decimals arrive as strings from the codec; show them as numbers, exactly.
        try:
            Decimal(value)
        except ArithmeticError:
            pass
        else:
            return value
        return value if " " not in value else json.dumps(value)
    if isinstance(value, Mapping):
        # Windows and ``extra``: the keys tell what is there; jsonl has the values.
        return "{" + ",".join(str(k) for k in value) + "}"
    return json.dumps(value, separators=(",", ":"), default=str)


def _number(value: float) -> str:
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.3f}B"
    if size >= 1e6:
        return f"{value / 1e6:.3f}M"
    if size >= 1:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.6g}"
