"""Writing event values down and reading them back exactly, whatever the store.

Storage plugins (cmcsync-sql, cmcsync-redis) must rebuild the very events the client delivered.

- Each payload attribute of an event class has a *kind*, read from its type hint:
  ``int``, ``real`` (float or :class:`~decimal.Decimal`), ``str``, ``bool``, ``windows``
  (a mapping of window objects) or ``json`` (anything else).
- Containers (``params``, ``extra``, windows) are written as JSON by :func:`dumps`, which
  writes a :class:`~decimal.Decimal` as a JSON number with its exact digits; :func:`loads`
  reads them back with ``parse_float=Decimal`` for events of a ``decimal=True`` client, so
  every value comes back with the same type and digits.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Literal

import attrs

from cmcsync import events
from cmcsync.channels import CHANNELS, Channel

__all__ = [
    "ENVELOPE",
    "Kind",
    "channel_classes",
    "class_named",
    "dumps",
    "loads",
    "number_mode",
    "payload_kinds",
    "read_real",
    "window_class",
    "windows_from_plain",
]

#: The attributes every event has; the rest is the payload.
ENVELOPE = ("channel", "params", "ts", "extra")

Kind = Literal["int", "real", "str", "bool", "windows", "json"]

_SCALARS: Mapping[Any, Kind] = {int: "int", str: "str", bool: "bool"}


def _kind(hint: Any) -> Kind:
    args = set(typing.get_args(hint)) - {type(None)}
    if Decimal in args or float in args:
        return "real"
    origin = typing.get_origin(hint)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        value = typing.get_args(hint)[1]
        return "windows" if attrs.has(value) else "json"
    if len(args) == 1:
        return _SCALARS.get(next(iter(args)), "json")
    return _SCALARS.get(hint, "json")


_KINDS: dict[type, Mapping[str, Kind]] = {}


def payload_kinds(cls: type) -> Mapping[str, Kind]:
    """Return the payload attributes of an event or window class and their kinds.

    :param cls: a class of :mod:`cmcsync.events`.
    :returns: attribute name -> kind, in field order, without ``ENVELOPE``.
    """
    found = _KINDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _KINDS[cls] = {
            field.name: _kind(hints[field.name])
            for field in attrs.fields(cls)
            if field.name not in ENVELOPE
        }
    return found


@functools.cache
def window_class(cls: type, name: str) -> type:
    """Return the window class of the ``windows`` attribute ``name`` of ``cls``."""
    hint = typing.get_type_hints(cls)[name]
    found: type = typing.get_args(hint)[1]
    return found


@functools.cache
def channel_classes(channel: Channel) -> tuple[type[events.Event], ...]:
    """Return the classes a channel's events may have: its event class, then subclasses."""
    found: list[type[events.Event]] = [channel.event_type]
    for cls in found:
        found.extend(sub for sub in cls.__subclasses__() if sub not in found)
    return tuple(found)


@functools.cache
def _classes_by_name() -> Mapping[str, type[events.Event]]:
    return {cls.__name__: cls for row in CHANNELS.values() for cls in channel_classes(row)}


def class_named(name: str) -> type[events.Event]:
    """Return the event class called ``name``.

    :raises KeyError: when :mod:`cmcsync.events` has no event class of that name.
    """
    return _classes_by_name()[name]


def number_mode(decimal: bool) -> Callable[[Any], float | Decimal]:
    """Return the function that turns a stored number into an event's ``real`` value."""
    return _to_decimal if decimal else _to_float


def _to_decimal(value: Any) -> Decimal:
    if type(value) is float:
        return Decimal(repr(value))
    return value if type(value) is Decimal else Decimal(value)


def _to_float(value: Any) -> float:
    return value if type(value) is float else float(value)


def read_real(text: str, decimal: bool) -> float | Decimal:
    """Read a ``real`` written as text (``str()`` of a Decimal, ``repr()`` of a float)."""
    return Decimal(text) if decimal else float(text)


# --- JSON with exact decimals ----------------------------------------------------------------


#: A str as a JSON string, other than ASCII kept as it is: ``json.dumps(text,
#: ensure_ascii=False)``, without building an encoder for each string.
_string = json.JSONEncoder(ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """Write ``value`` as compact JSON, a Decimal as a number with its exact digits.

    A Decimal without a point or exponent gets ``E0`` (``5`` -> ``5E0``), so that it reads
    back as a Decimal and not as an int. Window objects are written as their attributes.
    Non-finite floats are written as ``Infinity``/``NaN``, as Python's :mod:`json` does.
    Containers are written at any depth: the walk keeps its own stack instead of recursing.

    :raises TypeError: for a value JSON cannot hold.
    :raises ValueError: for a container that holds itself, which has no JSON form.
    """
    parts: list[str] = []
    out = parts.append
    # One frame per container being written, outermost first: its id, its numbered entries
    # not yet written (key-value pairs for an object), whether it is an object, and the
    # bracket that closes it.
    stack: list[tuple[int, Iterator[tuple[int, Any]], bool, str]] = []
    open_ids: set[int] = set()
    while True:
        # Write ``value``: all of it if it is a scalar, its opening bracket if a container.
        kind = type(value)
        entries: Iterable[Any] | None = None
        if value is None:
            out("null")
        elif value is True or value is False:
            out("true" if value else "false")
        elif kind is int:
            out(str(value))
        elif kind is float:
            out(json.dumps(value))
        elif kind is Decimal:
            out(_decimal_text(value))
        elif kind is str:
            out(_string(value))
        elif isinstance(value, Mapping):
            entries, keyed = value.items(), True
        elif isinstance(value, (list, tuple)):
            entries, keyed = value, False
        elif attrs.has(kind):
            fields = attrs.fields(kind)
            entries, keyed = [(field.name, getattr(value, field.name)) for field in fields], True
        elif isinstance(value, int):  # an int subclass such as an IntEnum
            out(str(int(value)))
        else:
            raise TypeError(f"cannot write {kind.__name__} {value!r} as JSON")
        if entries is not None:
            if id(value) in open_ids:
                raise ValueError(
                    f"cannot write {kind.__name__} {_short(value)} as JSON: it holds itself"
                )
            out("{" if keyed else "[")
            stack.append((id(value), enumerate(entries), keyed, "}" if keyed else "]"))
            open_ids.add(id(value))
        # Then find the next value: the next entry of the innermost open container, closing
        # the containers that have none left.
        while stack:
            ident, numbered, keyed, closer = stack[-1]
            entry = next(numbered, None)
            if entry is None:
                out(closer)
                stack.pop()
                open_ids.discard(ident)
                continue
            n, item = entry
            if n:
                out(",")
            if keyed:
                key, value = item
                out(_string(str(key)))
                out(":")
            else:
                value = item
            break
        else:
            return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        return json.dumps(float(value))
    text = str(value)
    return text if ("." in text or "E" in text) else text + "E0"


def loads(text: str, decimal: bool) -> Any:
    """Read JSON written by :func:`dumps`; non-integral numbers as Decimal when ``decimal``."""
    return json.loads(text, parse_float=Decimal if decimal else float)


def windows_from_plain(cls: type, name: str, plain: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the window objects of attribute ``name`` of ``cls`` from :func:`loads` output.

    :param cls: the event class.
    :param name: the ``windows`` attribute.
    :param plain: window name -> the window's attributes.
    """
    window = window_class(cls, name)
    return {key: window(**attrs_) for key, attrs_ in plain.items()}
