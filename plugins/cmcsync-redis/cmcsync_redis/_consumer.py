"""Reading events back from the streams, alone or as part of a consumer group."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import attrs
import redis
from redis import exceptions as redis_exc

from cmcsync import Backoff, ConfigError
from cmcsync.events import Event
from cmcsync.storage import short_error
from cmcsync_redis._entries import EntryError, event_from_fields, stream_key
from cmcsync_redis._settings import DEFAULT_URL, redact_url
from cmcsync_redis._sink import connect, transient

__all__ = ["Consumer", "Entry"]

log = logging.getLogger("cmcsync_redis")

#: The longest single blocking read, so that :meth:`Consumer.close` from another thread
#: takes effect within this many seconds.
_BLOCK_SLICE = 1.0


@attrs.frozen
class Entry:
    """One stream entry and the event it holds.

    :param stream: the stream key.
    :param id: the entry id, e.g. ``"1717000000000-0"``.
    :param event: the event, equal to the one the producing client delivered.
    """

    stream: str
    id: str
    event: Event


class Consumer:
    """Yield the events a cmcsync-redis plugin published, as typed events, in stream order.

    Without a group, each consumer reads every entry from ``start`` on. With ``group``, the
    consumers of one group share the entries: each goes to one of them, and is acknowledged
    (``XACK``) when the consumer asks for the next one. An entry being processed when a
    consumer stops or dies, and those it had fetched but not yet yielded, are handed out
    again: first thing, to the next consumer of the same ``name`` (at least once).

    While Redis is unreachable the consumer waits and tries again with backoff, within the
    iteration's timeout; a group lost with the server's data is created again.

    :param redis_url: a Redis URL, or a ``redis.Redis`` client to use.
    :param channels: read the per-channel streams of these channels (wire or short names).
    :param streams: read these stream keys (per-subscription streams: see
        :func:`stream_key`); combined with ``channels``.
    :param prefix: the publishing plugin's ``prefix``.
    :param group: a consumer group name; ``None`` reads alone.
    :param name: this consumer's name in the group; required with ``group``.
    :param start: where reading starts: ``"0"`` from the oldest entry kept, ``"$"`` from the
        entries added after the consumer was made (or after the group was created), or an
        entry id.
    :param count: the most entries fetched in one round trip.
    :param backoff: the waits while Redis is unreachable.
    :raises ConfigError: for no stream, an unknown channel, or a group without a name.
    """

    def __init__(
        self,
        redis_url: str | redis.Redis = DEFAULT_URL,
        *,
        channels: Iterable[str] = (),
        streams: Iterable[str] = (),
        prefix: str = "cmcsync",
        group: str | None = None,
        name: str | None = None,
        start: str = "0",
        count: int = 500,
        backoff: Backoff | None = None,
    ) -> None:
        keys = [stream_key(channel, prefix=prefix) for channel in channels]
        keys += [key for key in streams if key not in keys]
        if not keys:
            raise ConfigError("a Consumer needs channels=[...] or streams=[...]", param="streams")
        if group is not None and not name:
            raise ConfigError("a Consumer in a group needs a name=...", param="name")
        if isinstance(redis_url, str):
            self._redis = connect(redis_url)
            self._owned = True
            self._where = redact_url(redis_url)
        else:
            self._redis = redis_url
            self._owned = False
            self._where = "Redis"
        self.streams = tuple(keys)
        self.group = group
        self.name = name
        self.count = count
        self.backoff = backoff or Backoff(base=0.1, cap=2.0)
        #: Entries that were not cmcsync events (logged and, in a group, acknowledged).
        self.skipped = 0
        self._start = start
        self._positions: dict[str, str] | None = None
        self._groups_ready = False
        self._pending_first = True
        self._to_ack: list[tuple[str, str]] = []
        self._closed = threading.Event()
        try:
            self._prepare()
        except Exception as exc:
            if not transient(exc):
                raise
            # Redis is unreachable now: the first read prepares, once it can.
            log.warning("cannot reach %s yet (%s)", self._where, short_error(exc))

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        who = f" group={self.group} name={self.name}" if self.group else ""
        return f"<cmcsync_redis.Consumer {self._where} streams={len(self.streams)}{who}>"

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until none comes for ``timeout`` seconds (``None``: until closed)."""
        for entry in self.entries(timeout):
            yield entry.event

    def entries(self, timeout: float | None = None) -> Iterator[Entry]:
        """Yield entries until none comes for ``timeout`` seconds (``None``: until closed).

        In a group, each entry is acknowledged when the next one is asked for, or by
        :meth:`ack`.
        """
        last = time.monotonic()
        failures = 0
        try:
            while not self._closed.is_set():
                remaining = None if timeout is None else timeout - (time.monotonic() - last)
                if remaining is not None and remaining <= 0:
                    return
                try:
                    self._flush_acks()
                    self._prepare()
                    batch = self._read(remaining)
                except Exception as exc:
                    if not (transient(exc) or _no_group(exc)):
                        raise
                    failures += 1
                    self._recover(exc, failures, remaining)
                    continue
                if failures:
                    log.warning("reading from %s again", self._where)
                    failures = 0
                for entry in batch:
                    yield entry
                    last = time.monotonic()
                    if self.group is not None:
                        self._to_ack.append((entry.stream, entry.id))
        finally:
            # The entries the caller finished are acknowledged even when it stops early.
            self._flush_acks_quietly()

    def ack(self, *entries: Entry) -> None:
        """Acknowledge entries now (in a group), rather than when the next one is asked for."""
        if self.group is not None:
            for entry in entries:
                self._redis.xack(entry.stream, self.group, entry.id)

    def close(self) -> None:
        """Stop iterating (from any thread) and release the connection if the consumer made it.

        The entry yielded last in a group is not acknowledged: it is handed out again.
        """
        self._closed.set()
        self._flush_acks_quietly()
        if self._owned:
            self._redis.close()

    # --- internals ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Pin where reading starts, or create the groups; once, or again after a loss."""
        if self.group is None:
            if self._positions is None:
                self._positions = self._initial_positions()
        elif not self._groups_ready:
            self._create_groups()
            self._groups_ready = True

    def _read(self, remaining: float | None) -> list[Entry]:
        block = _BLOCK_SLICE if remaining is None else min(_BLOCK_SLICE, remaining)
        block_ms = max(1, int(block * 1000))
        reply: Any
        if self.group is None:
            positions: Any = self._positions
            reply = self._redis.xread(positions, count=self.count, block=block_ms)
        else:
            # First this consumer's own entries that were never acknowledged, then new ones.
            cursor = "0" if self._pending_first else ">"
            cursors: Any = dict.fromkeys(self.streams, cursor)
            reply = self._redis.xreadgroup(
                self.group,
                self.name or "",
                cursors,
                count=self.count,
                block=None if self._pending_first else block_ms,
            )
            if self._pending_first and not any(items for _, items in reply or ()):
                self._pending_first = False
        return self._decode(reply or [])

    def _decode(self, reply: Any) -> list[Entry]:
        out: list[Entry] = []
        for stream, items in _pairs(reply):
            key = stream.decode() if isinstance(stream, bytes) else str(stream)
            for raw_id, fields in items:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                if self.group is None and self._positions is not None:
                    self._positions[key] = entry_id
                if not fields:  # a pending entry trimmed away meanwhile
                    self._to_ack.append((key, entry_id))
                    continue
                try:
                    event = event_from_fields(fields)
                except EntryError as exc:
                    self.skipped += 1
                    log.warning("skipped entry %s of %s: %s", entry_id, key, exc)
                    if self.group is not None:
                        self._to_ack.append((key, entry_id))
                    continue
                out.append(Entry(key, entry_id, event))
        return out

    def _initial_positions(self) -> dict[str, str]:
        if self._start != "$":
            return dict.fromkeys(self.streams, self._start)
        # XREAD's "$" means "after the last entry" anew on every call; pin it once, so no
        # entry added between two reads is missed.
        positions = {}
        for key in self.streams:
            last = self._redis.xrevrange(key, count=1)
            found = last[0][0] if last else b"0-0"
            positions[key] = found.decode() if isinstance(found, bytes) else str(found)
        return positions

    def _create_groups(self) -> None:
        assert self.group is not None
        for key in self.streams:
            try:
                self._redis.xgroup_create(key, self.group, id=self._start, mkstream=True)
            except redis_exc.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    def _flush_acks(self) -> None:
        if not self._to_ack or self.group is None:
            return
        by_stream: dict[str, list[str]] = {}
        for key, entry_id in self._to_ack:
            by_stream.setdefault(key, []).append(entry_id)
        for key, ids in by_stream.items():
            self._redis.xack(key, self.group, *ids)
        self._to_ack.clear()

    def _flush_acks_quietly(self) -> None:
        try:
            self._flush_acks()
        except Exception as exc:  # noqa: BLE001 - unacknowledged entries are handed out again
            log.warning(
                "could not acknowledge %d entries on %s (%s); they will be handed out again",
                len(self._to_ack),
                self._where,
                short_error(exc),
            )

    def _recover(self, error: BaseException, failures: int, remaining: float | None) -> None:
        if failures == 1:
            log.warning("cannot read from %s (%s); trying again", self._where, short_error(error))
        if _no_group(error):
            self._groups_ready = False  # the server lost the group (a restart): create it again
            self._pending_first = True
            self._to_ack.clear()
        delay = self.backoff.compute(failures)
        if remaining is not None:
            delay = min(delay, remaining)
        self._closed.wait(delay)


def _no_group(error: BaseException) -> bool:
    return isinstance(error, redis_exc.ResponseError) and str(error).startswith("NOGROUP")


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    # RESP2 answers a list of [stream, entries]; RESP3 a mapping stream -> entries.
    if isinstance(reply, dict):
        return list(reply.items())
    return [(stream, items) for stream, items in reply]
