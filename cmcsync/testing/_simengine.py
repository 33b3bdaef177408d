"""The simulator's feed engine: runs each data source while any subscription needs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cmcsync.testing._feeds import Feeds, Source
from cmcsync.testing._simconn import SimConnection
from cmcsync.testing._simprotocol import SubKey

__all__ = ["FeedEngine"]

_log = logging.getLogger("cmcsync.testing.simulator")

#: Pushes one ``data`` payload of a subscription to some connections.
Push = Callable[[Sequence[SimConnection], SubKey, dict[str, Any]], None]


class FeedEngine:
    """Starts a task per source on first use, stops it when its last subscriber leaves.

    Lives on the simulator's event loop; none of its methods may be called from another
    thread.

    :param feeds: the data generator.
    :param push: called with the subscribed connections and the payload of every push.
    """

    def __init__(self, feeds: Feeds, push: Push) -> None:
        self._feeds = feeds
        self._push = push
        self._subscribers: dict[SubKey, dict[int, SimConnection]] = {}
        self._users: dict[Source, int] = {}
        self._tasks: dict[Source, asyncio.Task[None]] = {}
        # Stalled subscriptions: key -> {connection id: what ends the stall}.
        self._stalled: dict[SubKey, dict[int, str]] = {}

    def stall(self, key: SubKey, until: str) -> int:
        """Stop pushing ``key`` to the connections subscribed to it now, acks unaffected.

        :param until: ``"resubscribe"``: a new subscribe of the key on that connection ends
            it; ``"reconnect"``: only a new connection gets the data again.
        :returns: how many connections were stalled.
        """
        targets = self._subscribers.get(key, {})
        self._stalled[key] = dict.fromkeys(targets, until)
        return len(targets)

    def _live(self, key: SubKey, subscribers: dict[int, SimConnection]) -> list[SimConnection]:
        stalled = self._stalled.get(key)
        if not stalled:
            return list(subscribers.values())
        return [conn for conn_id, conn in subscribers.items() if conn_id not in stalled]

    def add(self, conn: SimConnection, key: SubKey) -> None:
        """Deliver ``key``'s data to ``conn`` from now on."""
        stalled = self._stalled.get(key)
        if stalled is not None and stalled.get(conn.id) == "resubscribe":
            del stalled[conn.id]
        self._subscribers.setdefault(key, {})[conn.id] = conn
        for source in self._feeds.sources(key[0], dict(key[1])):
            self._users[source] = self._users.get(source, 0) + 1
            if source not in self._tasks:
                self._feeds.restart(source)
                self._tasks[source] = asyncio.get_running_loop().create_task(
                    self._run(source), name=f"cmcsync-sim-source-{source[0]}"
                )

    def remove(self, conn: SimConnection, key: SubKey) -> None:
        """Stop delivering ``key``'s data to ``conn``."""
        subscribers = self._subscribers.get(key)
        if subscribers is None or subscribers.pop(conn.id, None) is None:
            return
        if not subscribers:
            del self._subscribers[key]
        for source in self._feeds.sources(key[0], dict(key[1])):
            self._users[source] -= 1
            if not self._users[source]:
                del self._users[source]
                self._tasks.pop(source).cancel()

    def snapshot(self, conn: SimConnection, key: SubKey) -> None:
        """Push ``key``'s current state to ``conn`` alone, if its channel has a snapshot."""
        if not self._feeds.snapshots(key[0]) or conn.id in self._stalled.get(key, {}):
            return
        for source in self._feeds.sources(key[0], dict(key[1])):
            for target, data in self._feeds.tick(source):
                if target == key:
                    self._push([conn], key, data)

    def close(self) -> None:
        """Stop every source."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._users.clear()
        self._subscribers.clear()
        self._stalled.clear()

    async def _run(self, source: Source) -> None:
        try:
            while True:
                await asyncio.sleep(self._feeds.delay(source))
                for key, data in self._feeds.tick(source):
                    subscribers = self._subscribers.get(key)
                    if subscribers:
                        live = self._live(key, subscribers)
                        if live:
                            self._push(live, key, data)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a generator bug must not take the server down; it is logged
            _log.exception("simulator feed source %r failed and stopped", source[0])
