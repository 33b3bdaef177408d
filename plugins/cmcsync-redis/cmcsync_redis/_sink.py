"""The Redis side of the writer: each batch is one MULTI/EXEC transaction of XADDs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis
from redis import exceptions as redis_exc
from redis.backoff import NoBackoff
from redis.retry import Retry

from cmcsync.events import Event
from cmcsync.storage import PartlyWritten
from cmcsync_redis._entries import event_fields, stream_key
from cmcsync_redis._settings import RedisSettings, redact_url

__all__ = ["RedisSink", "connect", "transient"]

#: Seconds a connection attempt or a reply may take before Redis counts as unreachable.
SOCKET_TIMEOUT = 5.0
#: How long the mark of a writer's last batch is kept (it only matters across a retry).
_MARK_TTL = 24 * 3600

_TRANSIENT = (
    redis_exc.ConnectionError,
    redis_exc.TimeoutError,
    redis_exc.BusyLoadingError,
    redis_exc.ReadOnlyError,
    redis_exc.OutOfMemoryError,
    redis_exc.MasterDownError,
    redis_exc.TryAgainError,
    ConnectionError,
    TimeoutError,
)
# Replies that mean "not now" rather than "never", whatever class redis-py gives them.
_TRANSIENT_REPLIES = ("LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "OOM", "BUSY")


def transient(error: BaseException) -> bool:
    """Whether a Redis error may go away by itself (server down, loading, failing over)."""
    if isinstance(error, _TRANSIENT):
        return True
    return isinstance(error, redis_exc.ResponseError) and str(error).startswith(_TRANSIENT_REPLIES)


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that fails fast instead of hanging when the server is gone.

    redis-py's own retries are off: the writer retries, knowing whether a transaction may
    have been applied already; a library retry of ``EXEC`` could apply it twice.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


class RedisSink:
    """Add batches of events to their streams, one transaction per batch.

    Used by the writer thread only. The transaction also sets
    ``<prefix>:writer:<id>`` to the batch id, so after a failure whose outcome is unclear
    (the connection dropped around ``EXEC``) :meth:`committed` tells whether to send it again.

    Items are ``(event, decimal)`` pairs: ``decimal`` says whether the client decoded
    numbers as Decimal, and is written in the entry.

    :param settings: the plugin's settings.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.writer_id = uuid.uuid4().hex
        self.mark_key = f"{settings.prefix}:writer:{self.writer_id}"
        self._client: redis.Redis | None = None
        self._per_subscription = settings.streams == "subscription"
        self._keys: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}

    def describe(self) -> str:
        return f"Redis at {redact_url(self.settings.url)}"

    def key(self, event: Event) -> str:
        """The stream ``event`` goes to."""
        if not self._per_subscription:
            return stream_key(event.channel, prefix=self.settings.prefix)
        try:
            cache_key = (event.channel, tuple(event.params.items()))
            found = self._keys.get(cache_key)
        except TypeError:  # an unhashable value in the echo
            return stream_key(event.channel, event.params, prefix=self.settings.prefix)
        if found is None:
            if len(self._keys) >= 100_000:
                self._keys.clear()
            found = self._keys[cache_key] = stream_key(
                event.channel, event.params, prefix=self.settings.prefix
            )
        return found

    def write(self, batch: Sequence[tuple[Event, bool]], batch_id: int) -> None:
        client = self._redis()
        maxlen = self.settings.maxlen or None
        pipe = client.pipeline(transaction=True)
        for event, decimal in batch:
            pipe.xadd(
                self.key(event),
                event_fields(event, decimal=decimal),  # type: ignore[arg-type]
                maxlen=maxlen,
                approximate=self.settings.approximate,
            )
        pipe.set(self.mark_key, batch_id, ex=_MARK_TTL)
        results = pipe.execute(raise_on_error=False)
        # EXEC applies every command that did not fail: an error here is about those items
        # alone (a key holding another type), the rest of the batch is written.
        refused = [n for n, result in enumerate(results[:-1]) if isinstance(result, Exception)]
        if refused:
            raise PartlyWritten(refused, results[refused[0]])
        if isinstance(results[-1], Exception):
            raise results[-1]

    def committed(self, batch_id: int) -> bool:
        found = self._redis().get(self.mark_key)
        return found is not None and int(found) >= batch_id

    def transient(self, error: BaseException) -> bool:
        return transient(error)

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self.settings.url)
        return self._client
