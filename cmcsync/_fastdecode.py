"""Generated decoders: the codec's common case, written as straight-line code per class.

For each event and window class, :func:`generate` writes (and compiles, once) a function
that reads the class's wire keys one by one, takes values of the expected type as they
are, hands others to the field's cattrs hook, and builds the instance by setting its slots.
It covers payloads where every value fits; for anything else it raises, and the general
path of :mod:`cmcsync._codec`, which builds ``extra`` and the errors, decodes the payload
instead. So the two paths give the same events, and only the common case is fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

__all__ = ["Fast", "Plan", "Slow", "generate", "plain_slots"]

#: A generated decoder: ``(channel, params, ts, data)`` for events, ``(data)`` for windows.
Fast = Callable[..., Any]


class Plan(Protocol):
    """What :func:`generate` reads of a decoding plan (see ``cmcsync._codec._Plan``)."""

    @property
    def cls(self) -> type: ...
    @property
    def by_wire(self) -> Mapping[str, tuple[str, Callable[[Any, Any], Any], Any]]: ...
    @property
    def required(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def pattern(self) -> re.Pattern[str] | None: ...
    @property
    def pattern_field(self) -> str | None: ...
    @property
    def pattern_hook(self) -> Callable[[Any, Any], Any] | None: ...
    @property
    def pattern_type(self) -> Any: ...


class Slow(Exception):
    """The fast path met something only the general path handles (``extra``, ``null`` in a
    required key...): the general path decodes the payload from scratch."""


_MISSING = object()


def plain_slots(cls: type) -> bool:
    """Whether building ``cls`` is only setting its slots: an attrs class with slots and no
    validator, converter, ``on_setattr`` or post-init hook."""
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        return False
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        return False
    names = {field.name for field in attrs.fields(cls)}
    slots = {slot for klass in cls.__mro__ for slot in klass.__dict__.get("__slots__", ())}
    # Any other slot (a cached hash...) is one __init__ would fill too.
    if slots - names - {"__weakref__"}:
        return False
    return all(
        field.validator is None and field.converter is None and field.on_setattr is None
        for field in attrs.fields(cls)
    )


def generate(plan: Plan, fast_type: Callable[[Any], type | None], *, envelope: bool) -> Fast:
    """Write a straight-line decoder for ``plan.cls``: one lookup per known wire key.

    It covers the common payload, where every value fits its attribute: values of the
    expected type are taken as they are, others go through the field's hook, unknown keys
    go to ``extra``. For anything else (a value that does not fit, a missing or ``null``
    required key) a hook raises, or it raises :class:`Slow`, and the general path, which
    puts unfit values in ``extra`` in wire order and makes the errors, decodes the payload
    instead; so both paths give the same event. Like cattrs' own structuring functions, it
    is generated once per class (and decoding mode).

    :param plan: the class's decoding plan: wire keys, hooks, required keys, window pattern.
    :param fast_type: for a field's type, the type whose values its hook returns unchanged
        (``float`` for a price in float mode...), or ``None`` to always call the hook.
    :param envelope: an event class (the decoder takes the envelope's channel, params and
        ts too) rather than a window class.
    :returns: the decoder.
    """
    ns: dict[str, Any] = {"M": _MISSING, "Slow": Slow, "cls": plan.cls}
    args = "channel, params, ts, data" if envelope else "data"
    lines = [f"def decode({args}):", "    get = data.get", "    n = 0"]
    required = {wire for _, wire in plan.required}
    defaults = {field.name: field.default for field in attrs.fields(plan.cls)}
    kwargs = ["channel=channel, params=params, ts=ts"] if envelope else []
    for i, (wire, (name, hook, kind)) in enumerate(plan.by_wire.items()):
        ns[f"h{i}"], ns[f"k{i}"] = hook, kind
        fast = fast_type(kind)
        # A missing or null key leaves the attribute at its default, as the general path does.
        default = defaults[name]
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            ns[f"d{i}"] = default.factory
            absent = f"f{i} = d{i}()"
        else:
            ns[f"d{i}"] = default
            absent = f"f{i} = d{i}"
        if wire in required:
            absent = "raise Slow"
        lines += [
            f"    v = get({wire!r}, M)",
            "    if v is M:",
            f"        {absent}",
            "    else:",
            "        n += 1",
        ]
        if fast is not None:
            ns[f"t{i}"] = fast
            lines += [f"        if v.__class__ is t{i}:", f"            f{i} = v", "        el"]
        else:
            lines.append("        ")
        lines[-1] += "if v is None:"
        lines += [f"            {absent}", "        else:", f"            f{i} = h{i}(v, k{i})"]
        kwargs.append(f"{name}=f{i}")
    # Keys left over: pool windows (names shaped like ``5m``, ``24h``) and unknown keys,
    # which go to extra in wire order, as in the general path.
    ns["known"] = frozenset(plan.by_wire)
    lines += [
        "    extra = {}",
        "    if n != len(data):",
        "        for key, v in data.items():",
        "            if key in known:",
        "                continue",
    ]
    if plan.pattern is not None:
        ns["match"], ns["window"], ns["wtype"] = (
            plan.pattern.fullmatch,
            plan.pattern_hook,
            plan.pattern_type,
        )
        lines += [
            "            if v.__class__ is dict and key.__class__ is str and match(key):",
            "                wins[key] = window(v, wtype)",
            "                continue",
        ]
        lines.insert(lines.index("    extra = {}"), "    wins = {}")
        kwargs.append(f"{plan.pattern_field}=wins")
    lines.append("            extra[key] = v")
    kwargs.append("extra=extra")
    if plain_slots(plan.cls):
        # Set the slots directly: the class's __init__ would do the same, through a bound
        # object.__setattr__ per attribute, at half the speed.
        ns["new"] = object.__new__
        lines.append("    o = new(cls)")
        for arg in ", ".join(kwargs).split(", "):
            attr, value = arg.split("=")
            ns[f"set_{attr}"] = getattr(plan.cls, attr).__set__
            lines.append(f"    set_{attr}(o, {value})")
        lines.append("    return o")
    else:
        lines.append(f"    return cls({', '.join(kwargs)})")
    exec("\n".join(lines), ns)  # noqa: S102 - the source is built above from the class's fields
    return ns["decode"]  # type: ignore[no-any-return]
