"""The plugin object: hooks that hand events to the writer, and the host's controls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from cmcsync.events import Event
from cmcsync.storage import Sink, StoragePlugin
from cmcsync_redis._settings import RedisSettings, redact_url

__all__ = ["WRITER_THREAD", "RedisPlugin"]

#: The name of the thread that writes to Redis.
WRITER_THREAD = "cmcsync-redis-writer"


class RedisPlugin(StoragePlugin[tuple[Event, bool]]):
    """Publish the events of the configured channels to Redis Streams.

    Each event becomes one stream entry (``XADD`` with ``MAXLEN``), in its channel's stream
    or its subscription's (see :class:`RedisSettings`); :class:`Consumer` reads them back as
    typed events, in any number of processes on any machine.

    The hook hands each event to a bounded buffer and returns; the thread
    ``cmcsync-redis-writer`` sends the buffer in batches, one ``MULTI``/``EXEC`` transaction
    each, and retries with backoff while Redis is down. Problems (an outage, a full buffer, events
    that could not be written) are logged on the ``cmcsync_redis`` logger, counted in
    :meth:`stats`, and raised as :class:`WriterError` from the plugin's next hook call, so
    the client reports them through ``cmcsync_on_plugin_error`` and its own stats. It never
    raises twice in a row, so the client never switches it off for reporting.

    When the client closes (``cmcsync_on_close``), what is held is written, within
    ``close_timeout``, and the writer thread is joined. :meth:`close` does the same for a
    program that stops using the plugin without closing its client.

    :param settings: the settings to use as they are; by default, the ``CMCSYNC_REDIS_*``
        environment variables, then the defaults of :class:`RedisSettings`.
    :param changes: settings to change, by attribute name (``url=...``, ``maxlen=...``).
    :raises ConfigError: for a setting that cannot be used.
    """

    writer_thread: ClassVar[str] = WRITER_THREAD
    destination: ClassVar[str] = "redis"
    log: ClassVar[logging.Logger] = logging.getLogger("cmcsync_redis")

    def __init__(self, settings: RedisSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else RedisSettings.from_env()
        self.settings: RedisSettings = attrs.evolve(base, **changes) if changes else base
        super().__init__(self.settings)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> RedisPlugin:
        """Build from a Django or Flask settings object (``CMCSYNC_REDIS_*`` names).

        :param settings: ``django.conf.settings``, Flask's ``app.config`` or any mapping.
        :param environ: where names missing from ``settings`` are looked up; ``os.environ``
            by default.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return cls(RedisSettings.from_settings(settings, environ=environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisPlugin:
        """Build from the ``CMCSYNC_REDIS_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls(RedisSettings.from_env(environ))

    def __repr__(self) -> str:
        return (
            f"<RedisPlugin {redact_url(self.settings.url)} streams per {self.settings.streams}"
            f" channels={len(self._channels)}>"
        )

    def make_sink(self, client: Any) -> Sink[tuple[Event, bool]]:
        from cmcsync_redis._sink import RedisSink

        return RedisSink(self.settings)

    def item(self, event: Event, client: Any) -> tuple[Event, bool]:
        # Each entry says whether the client decoded numbers as Decimal, so consumers
        # rebuild them with the same type.
        return (event, bool(getattr(client, "decimal", False)))

    def redacted_url(self) -> str:
        return redact_url(self.settings.url)
