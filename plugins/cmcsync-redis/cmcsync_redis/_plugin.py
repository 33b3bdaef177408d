"""The plugin object: hooks that hand events to the writer, and the host's controls."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

import cmcsync
from cmcsync.events import Event
from cmcsync.storage import BufferedWriter, WriterError
from cmcsync_redis._settings import RedisSettings, redact_url

__all__ = ["WRITER_THREAD", "RedisPlugin"]

log = logging.getLogger("cmcsync_redis")

#: The name of the thread that writes to Redis.
WRITER_THREAD = "cmcsync-redis-writer"

_live: weakref.WeakSet[RedisPlugin] = weakref.WeakSet()


class RedisPlugin:
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

    def __init__(self, settings: RedisSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else RedisSettings.from_env()
        self.settings: RedisSettings = attrs.evolve(base, **changes) if changes else base
        self._channels = frozenset(self.settings.channels)
        self._writer: BufferedWriter[tuple[Event, bool]] | None = None
        self._lock = threading.Lock()
        self._raised_last = False
        _live.add(self)

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

    # --- hooks ------------------------------------------------------------------------------

    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Event, client: Any) -> None:
        if event.channel in self._channels:
            # Each entry says whether the client decoded numbers as Decimal, so consumers
            # rebuild them with the same type.
            self._writer_for().put((event, bool(getattr(client, "decimal", False))))
        self._raise_reports()

    @cmcsync.hookimpl(optionalhook=True)
    def cmcsync_on_close(self, client: Any) -> None:
        writer = self._writer
        if writer is None:
            return
        writer.stop(_close_limit(self.settings.close_timeout, client))
        reports = writer.take_reports()
        self._raised_last = False
        if reports:
            raise WriterError.combine(reports)

    # --- the host's controls ------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Write what is held and join the writer thread; a later event starts it again.

        Problems are logged and counted in :meth:`stats` (there is no hook call to raise
        them from).

        :param timeout: seconds to keep writing; ``close_timeout`` by default.
        """
        writer = self._writer
        if writer is not None:
            writer.stop(self.settings.close_timeout if timeout is None else timeout)

    def stats(self) -> dict[str, Any]:
        """The writer's state and counters (see :meth:`BufferedWriter.stats`), and where to.

        :returns: ``redis`` (the URL without password), ``channels``, then ``state``,
            ``buffered``, ``in_flight``, ``capacity``, ``accepted``, ``written``,
            ``batches``, ``dropped``, ``rejected``, ``unwritten``, ``failed_attempts``,
            ``outages``, ``failures`` and ``last_error``.
        """
        out: dict[str, Any] = {
            "redis": redact_url(self.settings.url),
            "channels": list(self.settings.channels),
        }
        writer = self._writer
        if writer is None:
            out.update(
                state="stopped",
                buffered=0,
                in_flight=0,
                capacity=self.settings.buffer_size,
                batch_size=self.settings.batch_size,
                accepted=0,
                written=0,
                batches=0,
                dropped=0,
                rejected=0,
                unwritten=0,
                failed_attempts=0,
                outages=0,
                failures=0,
                last_error=None,
            )
        else:
            out.update(writer.stats())
        return out

    # --- internals ------------------------------------------------------------------------------

    def _writer_for(self) -> BufferedWriter[tuple[Event, bool]]:
        writer = self._writer
        if writer is not None:
            return writer
        from cmcsync_redis._sink import RedisSink

        with self._lock:
            if self._writer is None:
                sink = RedisSink(self.settings)
                self._writer = BufferedWriter(
                    sink,
                    thread_name=WRITER_THREAD,
                    capacity=self.settings.buffer_size,
                    batch_size=self.settings.batch_size,
                    backoff=self.settings.backoff,
                    logger=log,
                )
            return self._writer

    def _raise_reports(self) -> None:
        writer = self._writer
        if writer is None:
            return
        if self._raised_last:
            # A failing streak would switch the plugin off: report again only after a
            # call that succeeded.
            self._raised_last = False
            return
        reports = writer.take_reports()
        if reports:
            self._raised_last = True
            raise WriterError.combine(reports)


def _close_limit(close_timeout: float, client: Any) -> float:
    """Seconds to keep writing at close: the client gives the dispatcher thread its own
    ``timeouts.close`` for everything left, so stay well within it."""
    timeouts = getattr(client, "timeouts", None)
    client_limit = getattr(timeouts, "close", None)
    if isinstance(client_limit, (int, float)) and client_limit > 0:
        return min(close_timeout, 0.5 * client_limit)
    return close_timeout


@atexit.register
def _close_all() -> None:
    # A backstop for programs that exit without closing their client.
    for plugin in list(_live):
        plugin.close()
