"""The bounded queue between the reader threads and the dispatcher thread.

It holds data events, which count against the capacity and are subject to the overflow
policy (:data:`cmcsync.config.OverflowPolicy`), and lifecycle calls (:class:`Note`), which
are never dropped, never conflated and never make anyone wait. Producers put whole batches;
the consumer takes whole batches: one lock round-trip per batch, not per event.

Under ``"conflate"``, an event of a clock-driven channel (a row with a ``cadence``) whose
subscription already has an event waiting replaces that event in place, so at most one event
per such subscription is ever queued and a lagging consumer gets the latest price first;
events of other channels wait for room as under ``"block"``.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cmcsync.channels import CHANNELS
from cmcsync.config import DispatchConfig
from cmcsync.events import Event

__all__ = ["COUNTERS", "SLOW_CONSUMER_HOOK", "EventQueue", "Note"]

SLOW_CONSUMER_HOOK = "cmcsync_on_slow_consumer"

#: The queue's counters, all in :meth:`EventQueue.stats` (zero until something happens).
COUNTERS = (
    "submitted",
    "delivered",
    "dropped",
    "conflated",
    "undelivered",
    "blocked_submits",
    "slow_consumer_reports",
    "iterator_dropped",
)

#: Channels pushed on a clock, whose queued events may be conflated.
_CONFLATABLE = frozenset(name for name, row in CHANNELS.items() if row.cadence is not None)


class Note:
    """A queued lifecycle hook call.

    :param hook: the hook name.
    :param kwargs: its arguments.
    """

    __slots__ = ("hook", "kwargs")

    def __init__(self, hook: str, kwargs: dict[str, Any]) -> None:
        self.hook = hook
        self.kwargs = kwargs


class _Slot:
    """A queued event of a clock-driven channel, which a newer one may replace (conflation)."""

    __slots__ = ("event", "key")

    def __init__(self, event: Event, key: object) -> None:
        self.event = event
        self.key = key


def _conflation_key(event: Event) -> object:
    if event.channel not in _CONFLATABLE:
        return None
    try:
        key = (event.channel, frozenset(event.params.items()))
        hash(key)
    except TypeError:  # unhashable params: never conflated
        return None
    return key


class EventQueue:
    """A bounded queue of events and notes with an overflow policy.

    :param config: capacity, policy, slow-consumer threshold and batch size.
    :param client: passed as ``client`` in the slow-consumer note.
    """

    def __init__(self, config: DispatchConfig, client: object) -> None:
        self._config = config
        self._client = client
        self._capacity = config.queue_size
        self._slow_at = max(1, math.ceil(config.slow_fraction * config.queue_size))
        self._conflate: dict[object, _Slot] | None = {} if config.overflow == "conflate" else None
        self._lock = threading.Lock()
        # The consumer sleeps on this lock, held while nobody rang: a plain lock costs a
        # fraction of a Condition per wake-up, which counts at low rates (one batch per
        # message). Rung only while the consumer says it sleeps, so released at most once.
        self._bell = threading.Lock()
        self._bell.acquire()
        self._sleeping = False
        # Set by a consumer that waits on something else as well (the dispatcher thread also
        # waits for its sockets): called instead of releasing the bell.
        self._waker: Callable[[], None] | None = None
        self._not_full = threading.Condition(self._lock)
        self._items: collections.deque[object] = collections.deque()
        self._depth = 0  # data events queued; notes do not count against the capacity
        self._wrapped = 0  # notes and slots queued: the consumer must sort them out
        self._waiting = 0  # producers waiting for room
        self._closing = False
        self._no_waiting = False  # producers are stopping: a full queue no longer holds them
        self._done = False
        self._deadline = math.inf
        self._slow_armed = True
        self._drop_warned = False
        self._max_depth = 0
        self._blocked_seconds = 0.0
        #: The thread that must never wait for room: it is the one that makes room.
        self.consumer: threading.Thread | None = None
        self.counts = collections.Counter[str]()

    @property
    def blocked(self) -> bool:
        """Whether a producer is waiting for room."""
        return self._waiting > 0

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def past_deadline(self) -> bool:
        """Whether the consumer should stop delivering (closing, and its time is up)."""
        return self._closing and time.monotonic() >= self._deadline

    def count(self, key: str, n: int) -> None:
        """Add ``n`` to the counter ``key``, under the queue's lock."""
        with self._lock:
            self.counts[key] += n

    def put(self, events: Sequence[Event], *, wait: bool = True) -> str | None:
        """Queue events, applying the overflow policy.

        :param events: the batch, in arrival order.
        :param wait: ``False`` never waits for room, whatever the policy (for a thread that
            delivers events itself).
        :returns: a warning to log once the lock is released, or ``None``.
        """
        n = len(events)
        with self._lock:
            self.counts["submitted"] += n
            if self._closing:
                self.counts["undelivered"] += n
                return None
            if self._conflate is None and self._depth + n <= self._capacity:
                self._items.extend(events)
                self._depth += n
                return self._after_put()
            if self._config.overflow == "drop_oldest":
                return self._put_dropping(events)
            return self._put_waiting(events, wait)

    def put_note(self, note: Note) -> bool:
        """Queue a note behind what is queued; never waits.

        :returns: ``False`` when the consumer has stopped for good.
        """
        with self._lock:
            if self._done:
                return False
            self._items.append(note)
            self._wrapped += 1
            self._ring()
            return True

    def take_or_sleep(self) -> list[object] | bool | None:
        """Take up to ``batch_size`` items, or mark the consumer asleep if there are none.

        For a consumer that waits with its own means: the waker given to :meth:`set_waker`
        is called once something is queued after this returned ``False``.

        :returns: events and notes in order; ``None`` once closing and drained (or out of
            time); ``False`` when nothing is queued.
        """
        with self._lock:
            if self._items:
                self._sleeping = False
                if self._closing and time.monotonic() >= self._deadline:
                    return None
                return self._take()
            if self._closing:
                return None
            self._sleeping = True
            return False

    def set_waker(self, waker: Callable[[], None]) -> None:
        """Have :meth:`take_or_sleep`'s consumer woken by ``waker`` (called under the lock)."""
        self._waker = waker

    @property
    def empty(self) -> bool:
        """Whether nothing is queued (a hint: it may change at once)."""
        return not self._items

    def wait(self) -> bool:
        """Wait until something is queued.

        :returns: ``False`` once closing and drained (or out of time) instead.
        """
        while True:
            with self._lock:
                if self._items:
                    return not (self._closing and time.monotonic() >= self._deadline)
                if self._closing:
                    return False
                self._sleeping = True
            self._bell.acquire()

    def take_nowait(self) -> list[object] | None:
        """Take up to ``batch_size`` items, slots unwrapped, or ``None`` if there are none."""
        with self._lock:
            return self._take() if self._items else None

    def close(self, timeout: float) -> float:
        """Refuse new events, wake everyone, and set the consumer's deadline (once).

        :param timeout: seconds the consumer has left to deliver what is queued.
        :returns: the deadline, in :func:`time.monotonic` seconds.
        """
        with self._lock:
            if not self._closing:
                self._closing = True
                self._ring()
                self._not_full.notify_all()
            if self._deadline == math.inf:  # not even after stop(), which sets none
                self._deadline = time.monotonic() + timeout
            return self._deadline

    def stop(self) -> list[object]:
        """Mark the consumer gone for good and return what was left, slots unwrapped."""
        with self._lock:
            self._closing = True
            self._done = True
            left = list(self._items)
            self._items.clear()
            self._depth = 0
            self._not_full.notify_all()
            if self._wrapped:
                self._unwrap(left)
            return left

    def stats(self) -> dict[str, Any]:
        """The queue's gauges and counters."""
        with self._lock:
            return {
                "queue_depth": self._depth,
                "queue_capacity": self._capacity,
                "max_queue_depth": self._max_depth,
                "overflow": self._config.overflow,
                "blocked": self._waiting > 0,
                "blocked_seconds": self._blocked_seconds,
                **{key: self.counts[key] for key in COUNTERS},
            }

    # Everything below runs with _lock held.

    def _ring(self) -> None:
        if self._sleeping:
            self._sleeping = False
            if self._waker is not None:
                self._waker()
            else:
                self._bell.release()

    def _take(self) -> list[object]:
        items = self._items
        count = min(len(items), self._config.batch_size)
        if count == len(items):
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(count)]
        if self._wrapped:
            count = self._unwrap(batch)
        self._depth -= count
        if self._waiting:
            self._not_full.notify_all()
        if self._depth * 2 < self._capacity:
            self._slow_armed = True
            self._drop_warned = False
        return batch

    def _after_put(self) -> str | None:
        depth = self._depth
        if depth > self._max_depth:
            self._max_depth = depth
        self._ring()
        if depth < self._slow_at or not self._slow_armed:
            return None
        self._slow_armed = False
        self.counts["slow_consumer_reports"] += 1
        # Ahead of the backlog, so the report is not delayed by what it reports.
        kwargs = {"client": self._client, "depth": depth, "capacity": self._capacity}
        self._items.appendleft(Note(SLOW_CONSUMER_HOOK, kwargs))
        self._wrapped += 1
        return f"cmcsync plugins are falling behind: {depth} of {self._capacity} events queued"

    def _put_dropping(self, events: Sequence[Event]) -> str | None:
        items = self._items
        items.extend(events)
        self._depth += len(events)
        excess = self._depth - self._capacity
        report = None
        if excess > 0:
            self.counts["dropped"] += excess
            self._depth -= excess
            kept: list[object] = []
            while excess:
                item = items.popleft()
                if item.__class__ is Note:
                    kept.append(item)
                else:
                    excess -= 1
            items.extendleft(reversed(kept))
            if not self._drop_warned:
                self._drop_warned = True
                report = "cmcsync queue full: dropping the oldest events (overflow='drop_oldest')"
        return self._after_put() or report

    def _put_waiting(self, events: Sequence[Event], wait: bool) -> str | None:
        report = None
        index = self._conflate
        items = self._items
        i, n = 0, len(events)
        while i < n:
            key = None
            if index is not None:
                key = _conflation_key(events[i])
                slot = index.get(key) if key is not None else None
                if slot is not None:
                    slot.event = events[i]
                    self.counts["conflated"] += 1
                    i += 1
                    continue
            if self._depth >= self._capacity and wait and not self._on_consumer_thread():
                report = self._after_put() or report  # wake the consumer before waiting
                if not self._wait_for_room():
                    self.counts["undelivered"] += n - i
                    return report
                continue  # look again: another producer may have queued this subscription
            if index is None:
                end = min(n, i + max(self._capacity - self._depth, 1))
                items.extend(events[i:end])
                self._depth += end - i
                i = end
            else:
                if key is not None:
                    index[key] = slot = _Slot(events[i], key)
                    self._wrapped += 1
                    items.append(slot)
                else:
                    items.append(events[i])
                self._depth += 1
                i += 1
        return self._after_put() or report

    def _on_consumer_thread(self) -> bool:
        # A hook submitting events must not wait for room: only its own thread makes room.
        return self.consumer is not None and threading.current_thread() is self.consumer

    def _wait_for_room(self) -> bool:
        self.counts["blocked_submits"] += 1
        self._waiting += 1
        began = time.monotonic()
        try:
            while self._depth >= self._capacity and not self._closing and not self._no_waiting:
                self._not_full.wait()
        finally:
            self._waiting -= 1
            self._blocked_seconds += time.monotonic() - began
        return not self._closing and self._depth < self._capacity

    def stop_waiting(self) -> None:
        """Let no producer wait for room any more: what does not fit is counted undelivered.

        For the producers' own shutdown (the reader threads of a closing client), which must
        not wait for as long as the consumer takes to make room; the consumer goes on
        delivering what is queued.
        """
        with self._lock:
            self._no_waiting = True
            self._not_full.notify_all()

    def _unwrap(self, batch: list[object]) -> int:
        data = 0
        index = self._conflate
        for i, item in enumerate(batch):
            if item.__class__ is Note:
                self._wrapped -= 1
                continue
            data += 1
            if isinstance(item, _Slot):
                self._wrapped -= 1
                if index is not None and index.get(item.key) is item:
                    del index[item.key]
                batch[i] = item.event
        return data
