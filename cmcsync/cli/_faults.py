"""Faults on a schedule for ``cmcsync simulate`` and ``cmcsync demo``: the syntax and the clock.

A fault is one ``--fault`` value: comma-separated parts, one *action* and *when* it happens::

    every=30s,close=1012          close every connection with 1012, every 30 s
    at=10s,silence=5s             10 s after start, go silent for 5 s
    every=20s,drop                cut every connection (no close frame), every 20 s
    at=5s,every=1m,times=3,close=1001
    at=0,reject=429,count=3       refuse the next 3 handshakes with HTTP 429
    at=15s,fail-subscribe=2303    answer the next subscribe with error 2303

When: ``at=TIME`` (first or only time, from the start), ``every=TIME`` (repeat; first at
``at``, else after one period), ``times=N`` (stop repeating after N). Actions:
``close=CODE``, ``drop``, ``silence=TIME``, ``reject=STATUS``, ``fail-subscribe=CODE``.
Options: ``count=N`` (how many handshakes or subscribes ``reject`` / ``fail-subscribe``
refuse, default 1), ``reason=TEXT`` (the close reason). TIME is seconds or a number with
a unit: ``500ms``, ``10s``, ``2m``, ``1h``.
"""

from __future__ import annotations

import argparse
import heapq
import http
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from cmcsync._protocol import describe_close
from cmcsync.cli._common import parse_duration

__all__ = ["FAULT_HELP", "Fault", "FaultSchedule", "fault_arg", "parse_fault"]

FAULT_HELP = """\
faults (--fault, repeatable): WHEN,ACTION[,OPTION...]
  when:    at=TIME (once, TIME after start)   every=TIME (repeat; with at=, first at at=)
           times=N (with every=: stop after N)
  actions: close=CODE      close every connection with CODE (1000-1003, 1007-1014, 3000-4999)
           drop            cut every connection without a close frame
           silence=TIME    answer nothing and send nothing for TIME; sockets stay open
           reject=STATUS   refuse the next handshake with HTTP STATUS (e.g. 401, 429, 503)
           fail-subscribe=CODE  answer the next subscribe with CMC error CODE (e.g. 2303)
  options: count=N (reject, fail-subscribe: how many; default 1)   reason=TEXT (close)
  TIME is seconds or a number with a unit: 500ms, 10s, 2m, 1h. Examples:
    --fault every=30s,close=1012   --fault at=10s,silence=5s   --fault every=20s,drop
"""

_ACTIONS = ("close", "drop", "silence", "reject", "fail-subscribe")
_KEYS = ("at", "every", "times", *_ACTIONS, "count", "reason")
_SERVER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


@attrs.frozen(kw_only=True)
class Fault:
    """One scheduled fault.

    :param spec: the text it was parsed from, for messages.
    :param action: one of ``close``, ``drop``, ``silence``, ``reject``, ``fail-subscribe``.
    :param value: the close code, HTTP status, error code or silence seconds.
    :param first: seconds from the start to the first time.
    :param every: seconds between repeats, or ``None`` for once.
    :param times: how many times at most, or ``None`` for no limit.
    :param count: handshakes or subscribes refused (``reject``, ``fail-subscribe``).
    :param reason: the close reason (``close``).
    """

    spec: str
    action: str
    value: float = 0.0
    first: float = 0.0
    every: float | None = None
    times: int | None = None
    count: int = 1
    reason: str = ""


def _bad(spec: str, problem: str) -> ValueError:
    return ValueError(
        f"invalid fault {spec!r}: {problem}; a fault is WHEN,ACTION such as every=30s,close=1012 "
        "or at=10s,silence=5s (see --help)"
    )


def _time(spec: str, key: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _bad(spec, f"{key}: {exc}") from None


def _whole(spec: str, key: str, text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _bad(spec, f"{key} must be a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise _bad(spec, f"{key} must be {limit}, got {value}")
    return value


def parse_fault(spec: str) -> Fault:
    """Parse one ``--fault`` value (the syntax is in the module docstring).

    :raises ValueError: naming the part that is wrong and showing the syntax.
    """
    parts: dict[str, str] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        key, sep, text = part.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise _bad(spec, f"unknown part {key!r}; the parts are {', '.join(_KEYS)}")
        if key in parts:
            raise _bad(spec, f"{key} is given twice")
        if key == "drop":
            if sep:
                raise _bad(spec, "drop takes no value")
        elif not sep or not text.strip():
            raise _bad(spec, f"{key} needs a value, e.g. {key}={_SAMPLES[key]}")
        parts[key] = text.strip()
    actions = [key for key in _ACTIONS if key in parts]
    if len(actions) != 1:
        found = "none" if not actions else " and ".join(actions)
        raise _bad(spec, f"give exactly one action ({', '.join(_ACTIONS)}), found {found}")
    if "at" not in parts and "every" not in parts:
        raise _bad(spec, "say when: at=TIME, every=TIME, or both")
    action = actions[0]
    every = _time(spec, "every", parts["every"]) if "every" in parts else None
    if every is not None and every <= 0:
        raise _bad(spec, "every must be longer than 0")
    first = _time(spec, "at", parts["at"]) if "at" in parts else every
    assert first is not None
    times = _whole(spec, "times", parts["times"], 1) if "times" in parts else None
    if times is not None and every is None:
        raise _bad(spec, "times needs every")
    value: float = 0.0
    if action == "close":
        code = _whole(spec, "close", parts["close"], 1000, 4999)
        if code not in _SERVER_CLOSE_CODES and not 3000 <= code <= 4999:
            raise _bad(
                spec,
                f"{code} cannot be sent in a close frame; use 1000-1003, "
                "1007-1014 or 3000-4999 (CMC's own: 1001, 1011-1014, 4004, 4100-4102)",
            )
        value = code
    elif action == "silence":
        value = _time(spec, "silence", parts["silence"])
        if value <= 0:
            raise _bad(spec, "silence must be longer than 0")
    elif action == "reject":
        status = _whole(spec, "reject", parts["reject"], 400, 599)
        try:
            http.HTTPStatus(status)
        except ValueError:
            raise _bad(spec, f"{status} is not an HTTP status") from None
        value = status
    elif action == "fail-subscribe":
        value = _whole(spec, "fail-subscribe", parts["fail-subscribe"], 1)
    count = _whole(spec, "count", parts["count"], 1) if "count" in parts else 1
    if "count" in parts and action not in ("reject", "fail-subscribe"):
        raise _bad(spec, "count goes with reject or fail-subscribe")
    if "reason" in parts and action != "close":
        raise _bad(spec, "reason goes with close")
    return Fault(
        spec=spec,
        action=action,
        value=value,
        first=first,
        every=every,
        times=times,
        count=count,
        reason=parts.get("reason", ""),
    )


_SAMPLES = {
    "at": "10s",
    "every": "30s",
    "times": "3",
    "close": "1012",
    "silence": "5s",
    "reject": "429",
    "fail-subscribe": "2303",
    "count": "2",
    "reason": "restart",
}


class FaultSchedule:
    """Fires scheduled faults on a :class:`~cmcsync.testing.Simulator`, from one thread.

    The owner calls :meth:`run_due` whenever :meth:`next_due` has passed; nothing here
    starts a thread or waits.

    :param faults: what to fire.
    :param simulator: the simulator to act on.
    :param report: called with one line per fault fired.
    :param start: the monotonic time the schedule counts from.
    """

    def __init__(
        self,
        faults: Iterable[Fault],
        simulator: Any,
        report: Callable[[str], None],
        start: float,
    ) -> None:
        self._sim = simulator
        self._report = report
        self._start = start
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, str, Fault | None, int]] = []
        self._silent_until: float | None = None
        for fault in faults:
            self._push(start + fault.first, "fire", fault, 1)

    def _push(self, when: float, kind: str, fault: Fault | None, nth: int) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, fault, nth))

    def next_due(self) -> float | None:
        """The monotonic time of the next thing to do, or ``None`` when nothing is left."""
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float) -> None:
        """Fire everything due at ``now`` or before."""
        while self._heap and self._heap[0][0] <= now:
            when, _, kind, fault, nth = heapq.heappop(self._heap)
            if kind == "resume":
                if self._silent_until is not None and now >= self._silent_until:
                    self._silent_until = None
                    self._sim.silence(False)
                    self._say(now, "silence over: answering and sending again")
                continue
            assert fault is not None
            self._fire(fault, now)
            if fault.every is not None and (fault.times is None or nth < fault.times):
                self._push(when + fault.every, "fire", fault, nth + 1)

    def stop(self) -> None:
        """End a silence in progress, so the simulator can close its connections politely."""
        if self._silent_until is not None:
            self._silent_until = None
            self._sim.silence(False)

    def _say(self, now: float, text: str) -> None:
        self._report(f"[{now - self._start:7.1f}s] fault: {text}")

    def _fire(self, fault: Fault, now: float) -> None:
        sim = self._sim
        if fault.action == "close":
            code = int(fault.value)
            n = len(sim.connections())
            sim.close_all(code, fault.reason)
            self._say(
                now,
                f"closed {n} connection(s) with {describe_close(code, fault.reason)}",
            )
        elif fault.action == "drop":
            n = len(sim.connections())
            sim.drop_all()
            self._say(now, f"dropped {n} connection(s) without a close frame")
        elif fault.action == "silence":
            until = now + fault.value
            if self._silent_until is None:
                sim.silence(True)
            self._silent_until = max(self._silent_until or until, until)
            self._push(self._silent_until, "resume", None, 0)
            self._say(now, f"silent for {fault.value:g} s (sockets stay open)")
        elif fault.action == "reject":
            sim.reject_handshakes(int(fault.value), count=fault.count)
            self._say(now, f"the next {fault.count} handshake(s) get HTTP {int(fault.value)}")
        elif fault.action == "fail-subscribe":
            sim.fail_next_subscribe(int(fault.value), count=fault.count)
            self._say(now, f"the next {fault.count} subscribe(s) get error {int(fault.value)}")


def fault_arg(text: str) -> Fault:
    """An argparse type for ``--fault``."""
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
