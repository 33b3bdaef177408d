"""Placement of subscriptions over a pool of connections.

CMC allows ``sub_limit`` subscriptions per connection (100) and 10 connections per key. The
:class:`Pool` spreads the wanted subscriptions over as few connections as they need, keeps
them balanced (each new subscription goes to the least loaded connection with room), and
adapts when the server says a connection is fuller than expected (error 2303) or that the key
has no connection to spare (close 4004).

The pool only keeps the books; the client creates, starts and closes the connections.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Generic, TypeVar

from cmcsync.exceptions import ConfigError
from cmcsync.subscriptions import Subscription

__all__ = ["Pool"]

C = TypeVar("C")


class Pool(Generic[C]):
    """The connections of one client and which subscriptions each one carries. Thread-safe.

    :param factory: builds connection number ``index`` (not started).
    :param max_connections: the most connections the pool opens.
    :param sub_limit: subscriptions per connection until the server says otherwise.
    """

    def __init__(
        self, factory: Callable[[int], C], *, max_connections: int, sub_limit: int
    ) -> None:
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError(
                f"max_connections must be a positive integer, got {max_connections!r}",
                param="max_connections",
            )
        self._factory = factory
        self._lock = threading.Lock()
        self.max_connections = max_connections
        self.sub_limit = sub_limit
        self.connections: list[C] = []
        self._caps: dict[int, int] = {}
        self._members: dict[int, set[Subscription]] = {}
        self._home: dict[Subscription, int] = {}

    # --- sizes ----------------------------------------------------------------------------

    def cap(self, index: int) -> int:
        """How many subscriptions connection ``index`` may carry."""
        return min(self._caps.get(index, self.sub_limit), self.sub_limit)

    @property
    def budget(self) -> int:
        """How many subscriptions the pool can carry in all."""
        return self.max_connections * self.sub_limit

    def learn_sub_limit(self, limit: int) -> None:
        """Use the server's ``sub_limit`` (from an ack) from now on."""
        if limit > 0:
            self.sub_limit = limit

    # --- connections ----------------------------------------------------------------------

    def ensure_first(self) -> list[C]:
        """Create connection 0 if there is none; return the connections created."""
        with self._lock:
            return self._grow(1)

    def _grow(self, count: int) -> list[C]:
        created = []
        while len(self.connections) < min(count, self.max_connections):
            index = len(self.connections)
            conn = self._factory(index)
            self.connections.append(conn)
            self._members[index] = set()
            created.append(conn)
        return created

    # --- placement ------------------------------------------------------------------------

    def check_budget(self, extra: int, *, param: str) -> None:
        """Raise if ``extra`` more subscriptions would not fit.

        :raises ConfigError: stating the budget.
        """
        with self._lock:
            total = len(self._home) + extra
            room = sum(self.cap(i) for i in range(self.max_connections))
        if total > room:
            raise ConfigError(
                f"{total} subscriptions would not fit: the budget is {room} "
                f"({self.max_connections} connections x {self.sub_limit} subscriptions, the "
                "server's sub_limit); unsubscribe first or raise max_connections "
                "(CMC allows 10 per key)",
                param=param,
            )

    def place(
        self,
        subs: Iterable[Subscription],
        *,
        avoid: int | None = None,
        only: Collection[int] | None = None,
    ) -> tuple[dict[int, list[Subscription]], list[C], list[Subscription]]:
        """Give each subscription without a home a connection.

        Opens as many connections as the total needs (so they stay balanced), then puts each
        subscription on the least loaded connection with room.

        :param avoid: a connection index not to use (the one that just refused them).
        :param only: use only these existing connections, and open none.
        :returns: (index -> subscriptions placed there, connections created, subscriptions
            for which there was no room).
        """
        placed: dict[int, list[Subscription]] = {}
        homeless: list[Subscription] = []
        with self._lock:
            todo = [s for s in subs if s not in self._home]
            needed = math.ceil((len(self._home) + len(todo)) / max(self.sub_limit, 1))
            created = self._grow(max(needed, 1)) if only is None else []
            for sub in todo:
                choices = [
                    i
                    for i in range(len(self.connections))
                    if i != avoid
                    and (only is None or i in only)
                    and len(self._members[i]) < self.cap(i)
                ]
                if not choices and only is None:
                    created += self._grow(len(self.connections) + 1)
                    choices = [
                        i
                        for i in range(len(self.connections))
                        if i != avoid and len(self._members[i]) < self.cap(i)
                    ]
                if not choices:
                    homeless.append(sub)
                    continue
                index = min(choices, key=lambda i: len(self._members[i]))
                self._members[index].add(sub)
                self._home[sub] = index
                placed.setdefault(index, []).append(sub)
        return placed, created, homeless

    def release(self, subs: Iterable[Subscription]) -> dict[int, list[Subscription]]:
        """Forget where ``subs`` live; return them grouped by their former connection."""
        out: dict[int, list[Subscription]] = {}
        with self._lock:
            for sub in subs:
                index = self._home.pop(sub, None)
                if index is not None:
                    self._members[index].discard(sub)
                    out.setdefault(index, []).append(sub)
        return out

    def shrink_cap(self, index: int, cap: int) -> None:
        """Connection ``index`` holds no more than ``cap`` (the server said 2303)."""
        with self._lock:
            self._caps[index] = max(cap, 0)

    def stop_growing(self) -> None:
        """Open no connection beyond those that exist (the key has none to spare)."""
        with self._lock:
            self.max_connections = max(1, len(self.connections))

    def restore_cap(self, index: int) -> None:
        """Connection ``index`` may carry ``sub_limit`` again (it reconnected)."""
        with self._lock:
            self._caps.pop(index, None)

    def home(self, sub: Subscription) -> int | None:
        """The index of the connection that carries ``sub``."""
        return self._home.get(sub)

    def members(self, index: int) -> list[Subscription]:
        """The subscriptions connection ``index`` carries."""
        with self._lock:
            return sorted(self._members.get(index, ()))

    def loads(self) -> list[int]:
        """How many subscriptions each connection carries, by index."""
        with self._lock:
            return [len(self._members[i]) for i in range(len(self.connections))]

    def group(self, subs: Sequence[Subscription]) -> dict[int, list[Subscription]]:
        """Group ``subs`` by the connection that carries them (homeless ones left out)."""
        out: dict[int, list[Subscription]] = {}
        for sub in subs:
            index = self._home.get(sub)
            if index is not None:
                out.setdefault(index, []).append(sub)
        return out
