"""Subscription identity and the registry of wanted subscriptions.

A :class:`Subscription` is one channel plus one element of its list param, with params
normalized by the channel table (:meth:`cmcsync.channels.Channel.split`). The
:class:`Registry` holds the set the user wants and the state of each one; the client sends it
again after every reconnect and moves each subscription from ``pending`` to ``active`` (or
``rejected``) as the server's acks and errors come in.

:class:`Requests` correlates request ids with the acks and errors that answer them, so a
caller can wait for the answer to its own request.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cmcsync.channels import Channel

__all__ = ["Registry", "Requests", "Subscription", "SubscriptionState"]


class SubscriptionState(str, enum.Enum):
    """Where a wanted subscription stands with the server."""

    #: Wanted; sent (or waiting for a connection to send it on) and not yet acknowledged.
    PENDING = "pending"
    #: Acknowledged by the server on the current connection.
    ACTIVE = "active"
    #: Refused by the server; the error says why. A refused :meth:`cmcsync.Client.subscribe`
    #: call raises and drops the subscription; one refused during a replay stays wanted and
    #: is sent again after the next reconnect.
    REJECTED = "rejected"
    #: No longer wanted (unsubscribed). Only reported, never stored.
    REMOVED = "removed"


@attrs.frozen(order=True, cache_hash=True)
class Subscription:
    """One channel and one element of its list param, normalized.

    :param channel: the channel's wire name.
    :param params: ``(name, value)`` pairs with the list param as a scalar.
    """

    channel: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, channel: str, params: Mapping[str, Any]) -> Subscription:
        """Build from a normalized params mapping."""
        return cls(channel, tuple(params.items()))

    @property
    def params_dict(self) -> dict[str, Any]:
        """The params as a dict, list param as a scalar."""
        return dict(self.params)

    def __str__(self) -> str:
        return f"{self.channel} " + " ".join(f"{k}={v}" for k, v in self.params)


def expand(row: Channel, params: Mapping[str, Any]) -> list[Subscription]:
    """Validate user params and return one :class:`Subscription` per list element.

    :raises cmcsync.ConfigError: naming the offending param.
    """
    return [Subscription.of(row.name, p) for p in row.split(params)]


class Registry:
    """The wanted subscriptions and their state. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified on every change, for callers waiting on acks (wait_settled).
        self._changed = threading.Condition(self._lock)
        self._state: dict[Subscription, SubscriptionState] = {}
        #: Bumped whenever a subscription starts or stops being wanted: a reader of
        #: :meth:`state` may keep what it learnt until this changes.
        self.wanted_version = 0
        self._errors: dict[Subscription, BaseException] = {}

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, sub: object) -> bool:
        return sub in self._state

    def add(self, subs: Iterable[Subscription]) -> list[Subscription]:
        """Want ``subs``; return those that were not wanted already (now ``pending``)."""
        added = []
        with self._lock:
            for sub in subs:
                if sub not in self._state:
                    self._state[sub] = SubscriptionState.PENDING
                    added.append(sub)
            self.wanted_version += 1
        return added

    def discard(self, subs: Iterable[Subscription]) -> list[Subscription]:
        """Stop wanting ``subs``; return those that were wanted."""
        removed = []
        with self._lock:
            for sub in subs:
                if self._state.pop(sub, None) is not None:
                    self._errors.pop(sub, None)
                    removed.append(sub)
            self.wanted_version += 1
            self._changed.notify_all()
        return removed

    def discard_channel(self, channel: str) -> list[Subscription]:
        """Stop wanting every subscription of ``channel``."""
        with self._lock:
            subs = [s for s in self._state if s.channel == channel]
        return self.discard(subs)

    def clear(self) -> list[Subscription]:
        """Stop wanting everything; return what was wanted."""
        with self._lock:
            subs = list(self._state)
            self._state.clear()
            self._errors.clear()
            self.wanted_version += 1
            self._changed.notify_all()
        return subs

    def set_state(
        self,
        subs: Iterable[Subscription],
        state: SubscriptionState,
        error: BaseException | None = None,
    ) -> list[Subscription]:
        """Move wanted ``subs`` to ``state``; return those whose state changed."""
        changed = []
        with self._lock:
            for sub in subs:
                old = self._state.get(sub)
                if old is None:
                    continue
                if error is not None:
                    self._errors[sub] = error
                else:
                    self._errors.pop(sub, None)
                if old is not state:
                    self._state[sub] = state
                    changed.append(sub)
            self._changed.notify_all()
        return changed

    def reset_pending(self) -> list[Subscription]:
        """Mark everything ``pending`` (the connection is gone); return all wanted."""
        with self._lock:
            for sub in self._state:
                self._state[sub] = SubscriptionState.PENDING
            self._changed.notify_all()
            return list(self._state)

    def wake(self) -> None:
        """Wake every :meth:`wait_settled` caller so it re-checks its stop condition."""
        with self._lock:
            self._changed.notify_all()

    def wait_settled(
        self,
        subs: Iterable[Subscription],
        deadline: float | None,
        stop: Callable[[], bool],
    ) -> bool:
        """Wait until none of ``subs`` is ``pending`` (active, rejected or no longer wanted).

        :param deadline: a :func:`time.monotonic` deadline, or ``None`` to wait for ever.
        :param stop: checked on every wake-up; waiting ends early when it returns true.
        :returns: whether they settled (false on the deadline or on ``stop``).
        """
        subs = tuple(subs)
        with self._lock:
            while True:
                if all(self._state.get(s) is not SubscriptionState.PENDING for s in subs):
                    return True
                if stop():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def state(self, sub: Subscription) -> SubscriptionState | None:
        """The state of ``sub``, or ``None`` if it is not wanted."""
        return self._state.get(sub)

    def error(self, sub: Subscription) -> BaseException | None:
        """The server's last error for ``sub``, if it was rejected."""
        return self._errors.get(sub)

    def wanted(self) -> list[Subscription]:
        """Every wanted subscription, in the order they were first wanted."""
        with self._lock:
            return list(self._state)

    def snapshot(self) -> dict[Subscription, SubscriptionState]:
        """A copy of every wanted subscription and its state."""
        with self._lock:
            return dict(self._state)

    def counts(self) -> dict[str, int]:
        """How many wanted subscriptions are in each state."""
        out = {s.value: 0 for s in SubscriptionState if s is not SubscriptionState.REMOVED}
        with self._lock:
            for state in self._state.values():
                out[state.value] += 1
        return out


@attrs.define(eq=False)
class Request:
    """One request awaiting the server's answer."""

    id: int
    method: str
    channel: str | None
    params: Mapping[str, Any] | None
    subs: tuple[Subscription, ...]
    #: The index of the connection the request was sent on.
    via: int | None = None
    done: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None
    answer: Mapping[str, Any] | None = None


class Requests:
    """Request ids and the requests still waiting for an ack or an error. Thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Request] = {}

    def next_id(self) -> int:
        """A fresh request id (for requests nobody waits on, such as pings)."""
        return next(self._ids)

    def open(
        self,
        method: str,
        channel: str | None = None,
        params: Mapping[str, Any] | None = None,
        subs: Iterable[Subscription] = (),
        via: int | None = None,
    ) -> Request:
        """Register a request about to be sent on connection ``via`` and return it."""
        request = Request(next(self._ids), method, channel, params, tuple(subs), via)
        with self._lock:
            self._pending[request.id] = request
        return request

    def resolve(
        self,
        request_id: int,
        *,
        answer: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> Request | None:
        """Answer a pending request; return it, or ``None`` if the id is not pending."""
        with self._lock:
            request = self._pending.pop(request_id, None)
        if request is not None:
            request.answer = answer
            request.error = error
            request.done.set()
        return request

    def get(self, request_id: int) -> Request | None:
        """The pending request with this id, if any."""
        with self._lock:
            return self._pending.get(request_id)

    def fail_all(self, error: BaseException, *, via: int | None = None) -> list[Request]:
        """Answer pending requests with ``error`` (connection lost, client closed).

        Subscriptions are not lost with their request: they stay wanted and are sent again
        on the next connection.

        :param via: only the requests sent on this connection; ``None`` for all.
        """
        with self._lock:
            pending = [r for r in self._pending.values() if via is None or r.via == via]
            for request in pending:
                del self._pending[request.id]
        for request in pending:
            request.error = error
            request.done.set()
        return pending

    def pending(self) -> list[Request]:
        """The requests still waiting, oldest first."""
        with self._lock:
            return list(self._pending.values())
