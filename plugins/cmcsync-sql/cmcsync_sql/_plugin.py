"""The plugin object: hooks that hand events to the writer, and the host's controls."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

import cmcsync
from cmcsync.events import Event
from cmcsync.storage import BufferedWriter, WriterError
from cmcsync_sql._settings import SqlSettings, redact_url

if TYPE_CHECKING:
    from cmcsync.channels import Channel

__all__ = ["WRITER_THREAD", "SqlPlugin"]

log = logging.getLogger("cmcsync_sql")

#: The name of the thread that writes to the database.
WRITER_THREAD = "cmcsync-sql-writer"

_live: weakref.WeakSet[SqlPlugin] = weakref.WeakSet()


class SqlPlugin:
    """Store the events of the configured channels in SQL tables, one table per channel.

    The hook hands each event to a bounded buffer and returns; the thread
    ``cmcsync-sql-writer`` writes the buffer in batches, one transaction each, and retries
    with backoff while the database is down. Problems (an outage, a full buffer, events
    that could not be written) are logged on the ``cmcsync_sql`` logger, counted in
    :meth:`stats`, and raised as :class:`WriterError` from the plugin's next hook call, so
    the client reports them through ``cmcsync_on_plugin_error`` and its own stats. It never
    raises twice in a row, so the client never switches it off for reporting.

    When the client closes (``cmcsync_on_close``), what is held is written, within
    ``close_timeout``, and the writer thread is joined. :meth:`close` does the same for a
    program that stops using the plugin without closing its client.

    :param settings: the settings to use as they are; by default, the ``CMCSYNC_SQL_*``
        environment variables, then the defaults of :class:`SqlSettings`.
    :param changes: settings to change, by attribute name (``url=...``, ``channels=...``).
    :raises ConfigError: for a setting that cannot be used.
    """

    def __init__(self, settings: SqlSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else SqlSettings.from_env()
        self.settings: SqlSettings = attrs.evolve(base, **changes) if changes else base
        self._channels = frozenset(self.settings.channels)
        self._writer: BufferedWriter[Event] | None = None
        self._lock = threading.Lock()
        self._raised_last = False
        _live.add(self)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> SqlPlugin:
        """Build from a Django or Flask settings object (``CMCSYNC_SQL_*`` names).

        :param settings: ``django.conf.settings``, Flask's ``app.config`` or any mapping.
        :param environ: where names missing from ``settings`` are looked up; ``os.environ``
            by default.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return cls(SqlSettings.from_settings(settings, environ=environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SqlPlugin:
        """Build from the ``CMCSYNC_SQL_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls(SqlSettings.from_env(environ))

    def __repr__(self) -> str:
        return f"<SqlPlugin {redact_url(self.settings.url)} channels={len(self._channels)}>"

    # --- hooks ------------------------------------------------------------------------------

    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Event, client: Any) -> None:
        if event.channel in self._channels:
            self._writer_for(client).put(event)
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

        :returns: ``database`` (the URL without password), ``channels``, then ``state``,
            ``buffered``, ``in_flight``, ``capacity``, ``accepted``, ``written``,
            ``batches``, ``dropped``, ``rejected``, ``unwritten``, ``failed_attempts``,
            ``outages``, ``failures`` and ``last_error``.
        """
        out: dict[str, Any] = {
            "database": redact_url(self.settings.url),
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

    def read_events(self, channel: str | Channel) -> list[Event]:
        """Read back the events stored for ``channel``, oldest first, as typed events.

        :param channel: a wire or short channel name, or a channel row.
        :raises ConfigError: for an unknown channel.
        """
        from cmcsync_sql._store import read_events

        return read_events(self.settings.url, channel, prefix=self.settings.table_prefix)

    # --- internals ------------------------------------------------------------------------------

    def _writer_for(self, client: Any) -> BufferedWriter[Event]:
        writer = self._writer
        if writer is not None:
            return writer
        from cmcsync_sql._store import SqlSink

        with self._lock:
            if self._writer is None:
                sink = SqlSink(
                    self.settings.url,
                    self.settings.channels,
                    prefix=self.settings.table_prefix,
                    # The first client decides how numbers are stored: exactly when it
                    # decodes them as Decimal.
                    decimal=bool(getattr(client, "decimal", False)),
                )
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
