"""Decoding ``data`` payloads into typed events, and events back into JSON-safe dicts.

The work is done by a dedicated cattrs converter (:func:`make_converter`, never the global
one). Each class's structuring function is built once, from the ``wire`` metadata of its
fields (see :func:`cmcsync.events.wire_map`); decoding a push is then one pass over the
payload's keys with a precomputed table, no reflection.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
import cattrs

from cmcsync import events
from cmcsync._fastdecode import Fast as _Fast
from cmcsync._fastdecode import generate
from cmcsync.channels import CHANNELS, Channel
from cmcsync.exceptions import DecodeError

__all__ = ["MAX_EXTRA_DEPTH", "Codec", "deeper_than", "make_converter"]

#: The deepest a value kept in ``extra`` (of the event or of one of its windows) may nest: a
#: list or object is one level, a list in it two, and so on. A push with a deeper value is
#: refused (:class:`DecodeError`, kind ``"too_deep"``).
#:
#: CMC's payloads nest a few levels at most (a window object in a list in the payload), so 64
#: leaves room for any format change while keeping a written event, its record and envelope
#: included, far below the depths where writers and readers downstream break: Python's
#: recursion limit (1000), which ``json.dumps`` and recursive writers run into, and the
#: nesting limits of JSON readers in other languages (commonly 100 or 128 levels). Without
#: it, an unknown key could carry anything the JSON parser accepts (1024 levels with orjson).
MAX_EXTRA_DEPTH = 64

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_INT = re.compile(r"-?[0-9]{1,20}")
# An int field beyond this magnitude is garbage, and int() of a huge-exponent Decimal
# would build a number with millions of digits.
_MAX_INT_EXPONENT = 24
# A hook raising one of these means "this value does not fit": the key goes to ``extra``.
_UNFIT = (ValueError, TypeError, ArithmeticError)

_REAL = float | Decimal | None
_REAL_REQUIRED = float | Decimal
_INT = int | None
_STR = str | None
_BOOL = bool | None
_TOKEN_WINDOWS = Mapping[str, events.TokenMetricWindow]

_Hook = Callable[[Any, Any], Any]


class _Partial(ValueError):
    """A container decoded in part: ``value`` goes to the field, ``rest`` to ``extra``."""

    def __init__(self, value: Any, rest: Any) -> None:
        super().__init__("partly decoded")
        self.value = value
        self.rest = rest


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unfit(value: Any, what: str) -> ValueError:
    return ValueError(f"{_short(value)} is not {what}")


# --- scalar hooks ---------------------------------------------------------------------------


def _real_as_float(value: Any, _: Any = None) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is Decimal or kind is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if kind is str and _JSON_NUMBER.fullmatch(value):
        return float(value)
    raise _unfit(value, "a number")


def _real_as_decimal(value: Any, _: Any = None) -> Decimal:
    kind = type(value)
    if kind is Decimal:
        return value  # type: ignore[no-any-return]
    if kind is float:
        # repr() is the shortest text that reads back as this float: the JSON text, when
        # the payload was parsed without parse_float=Decimal.
        return Decimal(repr(value))
    if kind is int or (kind is str and _JSON_NUMBER.fullmatch(value)):
        return Decimal(value)
    raise _unfit(value, "a number")


def _int(value: Any, _: Any = None) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is float:
        if value.is_integer() and abs(value) < 10.0**_MAX_INT_EXPONENT:
            return int(value)
    elif kind is Decimal:
        if (
            value.is_finite()
            and value.adjusted() < _MAX_INT_EXPONENT
            and value == value.to_integral_value()
        ):
            return int(value)
    elif kind is str and _JSON_INT.fullmatch(value):
        return int(value)
    # bool is refused on purpose: ``true`` in a count is a server bug, not the number 1.
    raise _unfit(value, "an integer")


def _str(value: Any, _: Any = None) -> str:
    if type(value) is str:
        return value
    raise _unfit(value, "a string")


def _bool(value: Any, _: Any = None) -> bool:
    if value is True or value is False:
        return value
    raise _unfit(value, "a boolean")


# --- depth ----------------------------------------------------------------------------------


def deeper_than(value: Any, limit: int) -> bool:
    """Whether the list or dict ``value`` holds lists and dicts more than ``limit`` levels deep
    (``value`` itself is level 1).

    The walk goes one level at a time, without recursion, keeping only the containers of the
    level at hand, and stops at the first level past ``limit``; a container reached twice on
    one level is walked once, so values that share or hold themselves end the walk too. Only
    exact dicts and lists are containers, as the JSON parser builds them.
    """
    level: Iterable[Any] = (value,)
    for _ in range(limit):
        below: dict[int, Any] = {}
        for container in level:
            for item in container.values() if container.__class__ is dict else container:
                if item.__class__ is dict or item.__class__ is list:
                    below[id(item)] = item
        if not below:
            return False
        level = below.values()
    return True


def _deep_key(extra: Mapping[str, Any]) -> str | None:
    """The first key of ``extra`` whose value nests deeper than :data:`MAX_EXTRA_DEPTH`, or
    ``None``."""
    for key, value in extra.items():
        if (value.__class__ is dict or value.__class__ is list) and deeper_than(
            value, MAX_EXTRA_DEPTH
        ):
            return key
    return None


def _refuse_deep(name: str, channel: Any, event: Any, window_fields: tuple[str, ...]) -> None:
    """Raise if ``event`` keeps a value nested deeper than :data:`MAX_EXTRA_DEPTH`.

    The values kept as they came are looked at: ``extra``, and the ``extra`` of each window
    in the attributes ``window_fields``. Only their lists and dicts are walked.

    :param name: the channel's name (or the class's, without one), for the message.
    :param channel: the channel, for the error's ``channel``.
    :raises DecodeError: with ``kind="too_deep"``, naming the key and the limit.
    """
    place: str | None = None
    key = _deep_key(event.extra) if event.extra else None
    if key is not None:
        place = f"key {_short(key)}"
    else:
        for field in window_fields:
            for window, item in getattr(event, field).items():
                if item.extra and (key := _deep_key(item.extra)) is not None:
                    place = f"key {_short(key)} in window {_short(window)}"
                    break
            if place is not None:
                break
    if place is not None:
        raise DecodeError(
            f"{name}: the value of {place} nests deeper than {MAX_EXTRA_DEPTH} levels, "
            "the most cmcsync accepts",
            channel=channel,
            kind="too_deep",
        )


def _window_fields(cls: type) -> tuple[str, ...]:
    """The attributes of ``cls`` that map window names to window objects."""
    hints = typing.get_type_hints(cls)
    return tuple(
        field.name
        for field in attrs.fields(cls)
        if typing.get_origin(hints[field.name]) is Mapping
        and _is_window(typing.get_args(hints[field.name])[-1])
    )


# --- class hooks ----------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """Everything needed to decode one class, computed once."""

    cls: type
    #: wire key -> (attribute name, structuring hook, attribute type)
    by_wire: Mapping[str, tuple[str, _Hook, Any]]
    #: (attribute name, wire key) of each required attribute
    required: tuple[tuple[str, str], ...]
    pattern: re.Pattern[str] | None
    pattern_field: str | None
    pattern_hook: _Hook | None
    pattern_type: Any

    @classmethod
    def build(cls, target: type, converter: cattrs.Converter) -> _Plan:
        hints = typing.get_type_hints(target)
        by_wire: dict[str, tuple[str, _Hook, Any]] = {}
        required: list[tuple[str, str]] = []
        pattern: re.Pattern[str] | None = None
        pattern_field: str | None = None
        pattern_hook: _Hook | None = None
        pattern_type: Any = None
        for field in attrs.fields(target):
            wire = field.metadata.get("wire")
            if wire is not None:
                kind = hints[field.name]
                hook = converter.get_structure_hook(kind)
                by_wire[wire] = (field.name, hook, kind)
                if field.metadata.get("required"):
                    required.append((field.name, wire))
            elif "wire_pattern" in field.metadata:
                pattern = re.compile(field.metadata["wire_pattern"])
                pattern_field = field.name
                pattern_type = typing.get_args(hints[field.name])[1]
                pattern_hook = converter.get_structure_hook(pattern_type)
        return cls(
            target,
            by_wire,
            tuple(required),
            pattern,
            pattern_field,
            pattern_hook,
            pattern_type,
        )

    def fields(self, data: Mapping[str, Any], kw: dict[str, Any]) -> dict[str, Any] | None:
        """Fill ``kw`` from ``data``; return the keys that did not fit, or ``None``."""
        extra: dict[str, Any] | None = None
        by_wire = self.by_wire
        windows: dict[str, Any] | None = None
        for key, value in data.items():
            spec = by_wire.get(key)
            if spec is None:
                if (
                    self.pattern is not None
                    and type(value) is dict
                    and type(key) is str
                    and self.pattern.fullmatch(key)
                ):
                    assert self.pattern_hook is not None
                    if windows is None:
                        windows = {}
                    windows[key] = self.pattern_hook(value, self.pattern_type)
                    continue
                if extra is None:
                    extra = {}
                extra[key] = value
                continue
            if value is None:
                continue
            name, hook, kind = spec
            try:
                kw[name] = hook(value, kind)
            except _Partial as partial:
                kw[name] = partial.value
                if extra is None:
                    extra = {}
                extra[key] = partial.rest
            except _UNFIT:
                if extra is None:
                    extra = {}
                extra[key] = value
        if windows is not None:
            assert self.pattern_field is not None
            kw[self.pattern_field] = windows
        return extra

    def missing(self, kw: Mapping[str, Any]) -> str | None:
        """Return the wire key of the first required attribute absent from ``kw``."""
        for name, wire in self.required:
            if name not in kw:
                return wire
        return None


def _fast_type(kind: Any, decimal: bool) -> type | None:
    """The type whose values a hook of ``kind`` returns unchanged, checked inline by the
    generated decoders."""
    if kind in (_REAL, _REAL_REQUIRED):
        return Decimal if decimal else float
    if kind in (_INT, int):
        return int
    if kind == _STR:
        return str
    if kind == _BOOL:
        return bool
    return None


def _window_hook(plan: _Plan, decimal: bool) -> _Hook:
    """The structuring function of a window class (a plain JSON object, no envelope)."""
    cls = plan.cls
    fast = generate(plan, lambda kind: _fast_type(kind, decimal), envelope=False)

    def structure(data: Any, _: Any = None) -> Any:
        if type(data) is not dict:
            raise _unfit(data, "a JSON object")
        try:
            return fast(data)
        except Exception:  # noqa: BLE001, S110 - decoded again below, where extra and errors are made
            pass
        kw: dict[str, Any] = {}
        extra = plan.fields(data, kw)
        return cls(**kw, extra={} if extra is None else extra)

    return structure


def _fast_event(kind: type[events.Event], converter: cattrs.Converter, decimal: bool) -> _Fast:
    """The generated decoder of an event class, routing holder kinds like the general path.

    It takes ``(channel name, params, ts, data)`` and raises anything the general path
    (:func:`_event_hook`) must handle instead.
    """

    def make(cls: type) -> _Fast:
        return generate(
            _Plan.build(cls, converter), lambda k: _fast_type(k, decimal), envelope=True
        )

    base = make(kind)
    routes = {
        sub.route_value: make(sub) for sub in _subclasses(kind) if sub.route_value is not None
    }
    route_key = kind.route_key
    if route_key is None:
        return base

    def routed(channel: str, params: Any, ts: int, data: dict[str, Any]) -> Any:
        tag = data.get(route_key)
        if tag.__class__ is str:
            target = routes.get(tag)
            if target is not None:
                return target(channel, params, ts, data)
        return base(channel, params, ts, data)

    return routed


def _event_hook(plan: _Plan, routes: Mapping[str, _Hook], route_key: str | None) -> _Hook:
    """The structuring function of an event class: input is a data envelope."""
    cls = plan.cls
    window_fields = _window_fields(cls)

    def structure(frame: Any, _: Any = None) -> Any:
        channel = frame.get("channel") if isinstance(frame, Mapping) else None
        name = channel if isinstance(channel, str) else cls.__name__
        if not isinstance(frame, Mapping):
            raise DecodeError(
                f"{name}: expected a data envelope, got {_short(frame)}", channel=None
            )
        data = frame.get("data")
        if type(data) is not dict:
            raise DecodeError(
                f"{name}: the payload must be a JSON object, not {_short(data)}", channel=channel
            )
        if route_key is not None:
            tag = data.get(route_key)
            if type(tag) is str:
                target = routes.get(tag)
                if target is not None:
                    return target(frame, None)
        params = frame.get("params")
        if not isinstance(params, Mapping):
            raise DecodeError(
                f"{name}: params must be an object, not {_short(params)}", channel=channel
            )
        raw_ts = frame.get("ts")
        try:
            ts = _int(raw_ts)
        except _UNFIT:
            raise DecodeError(
                f"{name}: the envelope ts must be epoch milliseconds, not {_short(raw_ts)}",
                channel=channel,
            ) from None
        kw: dict[str, Any] = {"channel": channel, "params": params, "ts": ts}
        extra = plan.fields(data, kw)
        if plan.required:
            wire = plan.missing(kw)
            if wire is not None:
                if wire not in data:
                    problem = "is missing"
                elif data[wire] is None:
                    problem = "is null"
                else:
                    problem = f"has an unusable value {_short(data[wire])}"
                raise DecodeError(f"{name}: required key {wire!r} {problem}", channel=channel)
        event = cls(**kw, extra={} if extra is None else extra)
        _refuse_deep(name, channel, event, window_fields)
        return event

    return structure


def _is_window(kind: Any) -> bool:
    return kind in (events.TokenMetricWindow, events.PoolMetricWindow)


def _is_event(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, events.Event)


def _subclasses(cls: type[events.Event]) -> list[type[events.Event]]:
    found: list[type[events.Event]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def _token_windows(converter: cattrs.Converter) -> _Hook:
    window = converter.get_structure_hook(events.TokenMetricWindow)

    def structure(value: Any, _: Any = None) -> dict[str, events.TokenMetricWindow]:
        if type(value) is not list:
            raise _unfit(value, "a list of windows")
        out: dict[str, events.TokenMetricWindow] = {}
        raw: dict[str, Any] = {}
        rest: list[Any] = []
        for item in value:
            try:
                decoded = window(item, events.TokenMetricWindow)
            except _UNFIT:
                rest.append(item)
                continue
            name = decoded.window
            if name is None:
                rest.append(item)
                continue
            if name in out:
                # Two elements for one window: the later one wins, the earlier one is kept raw.
                rest.append(raw[name])
            out[name] = decoded
            raw[name] = item
        if rest:
            raise _Partial(out, rest)
        return out

    return structure


# --- unstructuring --------------------------------------------------------------------------


#: Types whose values are already JSON-safe, copied as they are (exact types: a subclass,
#: an IntEnum say, is written as its str()).
_PLAIN = (str, int, bool, type(None))


def _json_safe(value: Any, name: str) -> Any:
    """A JSON-safe copy of the value of attribute ``name``.

    Decimal and non-finite floats become strings, mappings become dicts with str keys, lists
    and tuples become lists, other objects their str(). Containers are copied by
    :func:`_copy_tree`, at any depth.

    :raises ValueError: if a container holds itself.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is Decimal:
        return str(value)
    if kind is dict and not value:
        return {}  # the usual ``extra``: no walk to set up
    if isinstance(value, (Mapping, list, tuple)):
        return _copy_tree(value, name)
    return str(value)


def _open(container: Any) -> tuple[Any, Iterator[tuple[Any, Any]]]:
    """An empty copy of ``container`` and an iterator over its ``(key or index, item)`` pairs."""
    if isinstance(container, Mapping):
        return {}, iter(container.items())
    return [], enumerate(container)


def _copy_tree(root: Any, name: str) -> Any:
    """The JSON-safe copy of a mapping, list or tuple, as :func:`_json_safe` describes it.

    The walk keeps its own stack instead of recursing, so a value nested as deep as the JSON
    parser allows (or deeper) is copied like any other; only memory bounds the depth. Items
    are visited in order, depth first, and a container's copy takes its place in its parent's
    copy before it is filled, so the copy has the order of the original.

    :param name: the attribute the value belongs to, for the error message.
    :raises ValueError: if a container holds itself: its copy would never end.
    """
    top, pairs = _open(root)
    # One frame per container being copied, outermost first: its id, its pairs not yet
    # copied, its copy, and its key or index in its parent's copy.
    stack: list[tuple[int, Iterator[tuple[Any, Any]], Any, Any]] = [(id(root), pairs, top, None)]
    open_ids = {id(root)}
    while stack:
        _, pairs, copy, _ = stack[-1]
        keyed = type(copy) is dict
        for key, item in pairs:
            kind = type(item)
            if kind in _PLAIN:
                safe = item
            elif kind is float:
                safe = item if math.isfinite(item) else str(item)
            elif kind is Decimal:
                safe = str(item)
            elif isinstance(item, (Mapping, list, tuple)):
                break  # a container: copied below, before the rest of this one
            else:
                safe = str(item)
            if keyed:
                copy[str(key)] = safe
            else:
                copy.append(safe)
        else:
            open_ids.discard(stack.pop()[0])
            continue
        slot = str(key) if keyed else key
        if id(item) in open_ids:
            path = [f"[{frame[3]!r}]" for frame in stack[1:]]
            outer = next(n for n, frame in enumerate(stack) if frame[0] == id(item))
            raise ValueError(
                f"{name}{''.join(path)}[{slot!r}] is {name}{''.join(path[:outer])} again: "
                "a container that holds itself has no JSON form"
            )
        child, child_pairs = _open(item)
        if keyed:
            copy[slot] = child
        else:
            copy.append(child)
        open_ids.add(id(item))
        stack.append((id(item), child_pairs, child, slot))
    return top


def _unstructure_factory(cls: type, converter: cattrs.Converter) -> Callable[[Any], Any]:
    # Payload fields first, ``extra`` last: the order a reader of a JSON line expects.
    names = [
        field.name
        for field in attrs.fields(cls)
        if field.name not in ("channel", "params", "ts", "extra")
    ]
    names.append("extra")

    def unstructure(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(obj, name)
            if isinstance(value, Mapping) and name == "windows":
                out[name] = {key: converter.unstructure(item) for key, item in value.items()}
            else:
                out[name] = _json_safe(value, name)
        return out

    return unstructure


# --- the converter --------------------------------------------------------------------------


def make_converter(*, decimal: bool = False) -> cattrs.Converter:
    """Build the cattrs converter that turns ``data`` envelopes into events.

    Wire decisions, for every channel:

    - **Input.** An event class structures a data envelope, ``{"channel", "params", "ts",
      "data"}`` (extra envelope keys such as ``type`` are ignored); the payload must be a JSON
      object. Window classes structure the window object alone.
    - **Names.** Each attribute reads the wire key in its field metadata
      (:func:`cmcsync.events.wire_map`); the table is built once per class.
    - **Missing and null.** A missing key and a ``null`` value both give ``None``, except
      for required keys (``cid``, ``p`` of the latest price), whose absence, ``null`` or
      unusable value raises :class:`~cmcsync.exceptions.DecodeError`.
    - **Unknown keys** go to ``extra`` verbatim, never dropped, never fatal. So does the
      value of a known key that does not fit its attribute; the attribute is then ``None``.
    - **Timestamps** (envelope ``ts``, ``ts``, ``ot``, ``lat``, ``spot``, ``spct``) are int
      epoch milliseconds. The envelope ``ts`` is required.
    - **Integers** (ids, counts, block heights, indexes, timestamps): JSON integers, integral
      floats (``12.0``) and integral strings (``"12"``) are accepted; ``true``/``false``,
      fractions and magnitudes of 10**24 and beyond are not.
    - **Other numbers** (prices, USD values, token amounts, percentages): ``float`` by
      default; with ``decimal=True`` a :class:`~decimal.Decimal`, exact when the JSON text
      was parsed with ``parse_float=Decimal`` (a float input becomes the Decimal of its
      shortest repr). Input may be int, float, Decimal or a string in JSON number syntax;
      booleans are refused. Out-of-range values become ``inf`` in float mode.
    - **Strings** must be strings and **booleans** (``ex``) must be booleans.
    - **Holder kinds.** ``HoldersMetrics`` and ``HolderWalletUpdate`` route on ``tp`` to the
      subclass whose ``route_value`` matches; an unknown or missing ``tp`` gives the base
      class, its kind-specific keys in ``extra``.
    - **Windows.** ``token_metric`` ``sts[]`` becomes a mapping ``win`` → window, in wire
      order; elements that are not objects, lack ``win`` or repeat one stay in
      ``extra["sts"]``. ``pool_metric`` top-level keys shaped like a window (``5m``, ``24h``,
      ``7d``, ``30m``...) with an object value become ``windows``.
    - **Depth.** A value kept in ``extra`` (of the event or of a window) may nest
      :data:`MAX_EXTRA_DEPTH` (64) lists and objects deep; a deeper one makes the whole push
      a :class:`~cmcsync.exceptions.DecodeError` of kind ``"too_deep"``, so no event carries
      a value that code writing it out would have to recurse through hundreds of levels.
    - **Unstructuring** an event gives its payload fields and ``extra`` (not ``channel``,
      ``params``, ``ts``), JSON-safe: Decimal and non-finite floats become strings, windows
      become dicts. ``extra`` is copied at any depth, without recursion.

    :param decimal: give prices, USD values and other non-integer numbers as ``Decimal``.
    :returns: a new converter; it shares no state with any other.
    """
    converter = cattrs.Converter(detailed_validation=False)
    real = _real_as_decimal if decimal else _real_as_float
    # Scalar hooks first: the class hooks below look them up once, when they are built.
    converter.register_structure_hook(_REAL, real)
    converter.register_structure_hook(_REAL_REQUIRED, real)
    converter.register_structure_hook(_INT, _int)
    converter.register_structure_hook(int, _int)
    converter.register_structure_hook(_STR, _str)
    converter.register_structure_hook(_BOOL, _bool)
    converter.register_structure_hook_factory(
        _is_window, lambda kind: _window_hook(_Plan.build(kind, converter), decimal)
    )
    converter.register_structure_hook_func(
        lambda kind: kind == _TOKEN_WINDOWS, _token_windows(converter)
    )

    def event_factory(kind: type[events.Event]) -> _Hook:
        routes = {
            sub.route_value: converter.get_structure_hook(sub)
            for sub in _subclasses(kind)
            if sub.route_value is not None
        }
        return _event_hook(_Plan.build(kind, converter), routes, kind.route_key)

    converter.register_structure_hook_factory(_is_event, event_factory)
    converter.register_unstructure_hook_factory(
        lambda kind: _is_event(kind) or _is_window(kind),
        lambda kind: _unstructure_factory(kind, converter),
    )
    return converter


class Codec:
    """Decode the ``data`` of a push into its channel's event, and events into dicts.

    One codec serves every channel; it is not tied to a thread, and holds no per-message
    state.

    :param decimal: give prices and other non-integer numbers as :class:`~decimal.Decimal`
        (feed it JSON parsed with ``parse_float=Decimal`` to keep them exact).
    """

    def __init__(self, *, decimal: bool = False) -> None:
        self.decimal = decimal
        self._converter = make_converter(decimal=decimal)
        # Built now so the first push of a channel costs the same as the others.
        self._hooks: dict[type, _Hook] = {
            row.event_type: self._converter.get_structure_hook(row.event_type)
            for row in CHANNELS.values()
        }
        # The generated decoder of each class, and its attributes holding windows.
        self._fast: dict[type, tuple[_Fast, tuple[str, ...]]] = {
            row.event_type: (
                _fast_event(row.event_type, self._converter, decimal),
                _window_fields(row.event_type),
            )
            for row in CHANNELS.values()
        }

    def decode(
        self, channel: Channel, params: Mapping[str, Any], data: Any, ts: int
    ) -> events.Event:
        """Decode one push.

        :param channel: the channel row of the push.
        :param params: the push's ``params``.
        :param data: the push's ``data``, as parsed from JSON.
        :param ts: the envelope's ``ts``, server time in epoch ms.
        :returns: an instance of ``channel.event_type`` (or of a subclass, for holder kinds).
        :raises DecodeError: with ``channel`` set: ``kind="undecodable"`` when ``data`` is
            not an object or a required key is missing or unusable, ``kind="too_deep"`` when
            a value kept in ``extra`` (of the event or of a window) nests deeper than
            :data:`MAX_EXTRA_DEPTH`. No other exception escapes.
        """
        fast = self._fast.get(channel.event_type)
        if (
            fast is not None
            and data.__class__ is dict
            and params.__class__ is dict
            and ts.__class__ is int
        ):
            decoder, window_fields = fast
            try:
                event: events.Event = decoder(channel.name, params, ts, data)
            except Exception:  # noqa: BLE001, S110 - the general path below decodes it, or says why not
                pass
            else:
                # Most pushes have neither extra nor windows: nothing to look at.
                if event.extra or window_fields:
                    _refuse_deep(channel.name, channel.name, event, window_fields)
                return event
        frame = {"channel": channel.name, "params": params, "data": data, "ts": ts}
        try:
            hook = self._hooks.get(channel.event_type)
            if hook is None:
                hook = self._hooks[channel.event_type] = self._converter.get_structure_hook(
                    channel.event_type
                )
            return hook(frame, channel.event_type)  # type: ignore[no-any-return]
        except DecodeError:
            raise
        except Exception as exc:
            # Anything else is a payload this codec failed to foresee; the reader thread
            # must see a DecodeError, never a crash.
            raise DecodeError(
                f"{channel.name}: cannot decode payload ({type(exc).__name__}: {exc})",
                channel=channel.name,
            ) from exc

    def to_dict(self, event: events.Event) -> dict[str, Any]:
        """Return the decoded fields of ``event`` as a JSON-safe dict.

        The keys are the attribute names (``price``, ``windows``, ``extra``...); ``channel``,
        ``params`` and ``ts`` are left out. Decimals become strings (exactness kept), windows
        become dicts. Values nested at any depth are copied (the walk does not recurse).

        :raises ValueError: if a container in the event holds itself (only an event built by
            hand can; a decoded one never does).
        """
        return self._converter.unstructure(event)  # type: ignore[no-any-return]
