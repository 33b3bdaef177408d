"""Stream keys, and events as stream entries (flat string fields) and back.

An entry holds, all as strings:

- ``channel``, ``params`` (the push's echo, JSON), ``ts`` (push time, epoch ms);
- ``event_type``: the event's class name (``Kline``, ``HolderTopShare``...);
- ``numbers``: ``decimal`` when the client decoded numbers as Decimal, else ``float``;
- one field per payload attribute that is not ``None``, named like the attribute: numbers
  as their exact text (``str()`` of a Decimal, ``repr()`` of a float), booleans as
  ``true``/``false``;
- ``windows`` and ``extra`` as JSON, when not empty.

So a consumer in any language reads ``price`` as a string with every digit the server sent,
and :func:`event_from_fields` rebuilds the very event the client delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from cmcsync.channels import get_channel
from cmcsync.events import Event
from cmcsync.storage import (
    class_named,
    dumps,
    loads,
    payload_kinds,
    read_real,
    windows_from_plain,
)

__all__ = ["EntryError", "event_fields", "event_from_fields", "stream_key"]


class EntryError(ValueError):
    """A stream entry that is not an event written by cmcsync-redis."""


def stream_key(
    channel: str, params: Mapping[str, Any] | None = None, *, prefix: str = "cmcsync"
) -> str:
    """Return the key of the stream events of ``channel`` (and ``params``) are added to.

    :param channel: a wire or short channel name.
    :param params: for per-subscription streams, the subscription's params (the list param
        as a scalar, as in ``event.params``); ``None`` for the channel's stream.
    :param prefix: the plugin's ``prefix``.
    :returns: ``cmcsync:onchain@kline`` for a channel;
        ``cmcsync:onchain@kline:platform_id=14:interval=1m:address=0xab...`` for a
        subscription (params in the channel's order, EVM addresses in lower case).
    :raises ConfigError: for an unknown channel.
    """
    row = get_channel(channel)
    if params is None:
        return f"{prefix}:{row.name}"
    scalar = row.scalar_form(params)
    if scalar is not None:
        items = [(name, scalar[name]) for name in row.params]
    else:  # an echo that does not fit the channel: keep it apart, in a stable order
        items = sorted((str(name), value) for name, value in params.items())
    return f"{prefix}:{row.name}:" + ":".join(f"{name}={value}" for name, value in items)


def event_fields(event: Event, *, decimal: bool) -> dict[str, str]:
    """Return the stream entry of ``event``: every field a string.

    :param event: the event.
    :param decimal: whether the client decodes numbers as Decimal (``client.decimal``); a
        consumer rebuilds numbers of the same type.
    """
    fields = {
        "channel": event.channel,
        "params": dumps(event.params),
        "ts": str(event.ts),
        "event_type": type(event).__name__,
        "numbers": "decimal" if decimal else "float",
    }
    for name, kind in payload_kinds(type(event)).items():
        value = getattr(event, name)
        if value is None:
            continue
        if kind == "real":
            fields[name] = str(value) if type(value) is Decimal else repr(value)
        elif kind == "bool":
            fields[name] = "true" if value else "false"
        elif kind == "int" or kind == "str":
            fields[name] = str(value)
        elif value:  # windows and other containers, left out when empty
            fields[name] = dumps(value)
    if event.extra:
        fields["extra"] = dumps(event.extra)
    return fields


def event_from_fields(fields: Mapping[Any, Any]) -> Event:
    """Rebuild the event of a stream entry written by :func:`event_fields`.

    :param fields: the entry's fields; keys and values may be ``bytes`` or ``str``.
    :returns: an event equal to the one the client delivered.
    :raises EntryError: naming what is missing or wrong.
    """
    text = {_text(key): _text(value) for key, value in fields.items()}
    missing = [name for name in ("channel", "params", "ts", "event_type") if name not in text]
    if missing:
        raise EntryError(f"not a cmcsync event entry: no {', '.join(missing)} field")
    try:
        cls = class_named(text["event_type"])
    except KeyError:
        raise EntryError(f"unknown event type {text['event_type']!r}") from None
    decimal = text.get("numbers") == "decimal"
    values: dict[str, Any] = {}
    try:
        for name, kind in payload_kinds(cls).items():
            raw = text.get(name)
            if raw is None:
                continue
            if kind == "real":
                values[name] = read_real(raw, decimal)
            elif kind == "int":
                values[name] = int(raw)
            elif kind == "bool":
                values[name] = raw == "true"
            elif kind == "str":
                values[name] = raw
            elif kind == "windows":
                values[name] = windows_from_plain(cls, name, loads(raw, decimal))
            else:
                values[name] = loads(raw, decimal)
        return cls(
            channel=text["channel"],
            params=loads(text["params"], decimal),
            ts=int(text["ts"]),
            extra=loads(text["extra"], decimal) if "extra" in text else {},
            **values,
        )
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise EntryError(f"a {cls.__name__} entry with an unreadable field: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)
