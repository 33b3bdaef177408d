"""The plugin object: hooks that hand events to the writer, and the host's controls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from cmcsync.events import Event
from cmcsync.storage import Sink, StoragePlugin
from cmcsync_sql._settings import SqlSettings, redact_url

if TYPE_CHECKING:
    from cmcsync.channels import Channel

__all__ = ["WRITER_THREAD", "SqlPlugin"]

#: The name of the thread that writes to the database.
WRITER_THREAD = "cmcsync-sql-writer"


class SqlPlugin(StoragePlugin[Event]):
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

    writer_thread: ClassVar[str] = WRITER_THREAD
    destination: ClassVar[str] = "database"
    log: ClassVar[logging.Logger] = logging.getLogger("cmcsync_sql")

    def __init__(self, settings: SqlSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else SqlSettings.from_env()
        self.settings: SqlSettings = attrs.evolve(base, **changes) if changes else base
        super().__init__(self.settings)

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

    def make_sink(self, client: Any) -> Sink[Event]:
        from cmcsync_sql._store import SqlSink

        return SqlSink(
            self.settings.url,
            self.settings.channels,
            prefix=self.settings.table_prefix,
            # The first client decides how numbers are stored: exactly when it decodes
            # them as Decimal.
            decimal=bool(getattr(client, "decimal", False)),
        )

    def item(self, event: Event, client: Any) -> Event:
        return event

    def redacted_url(self) -> str:
        return redact_url(self.settings.url)

    def read_events(self, channel: str | Channel) -> list[Event]:
        """Read back the events stored for ``channel``, oldest first, as typed events.

        :param channel: a wire or short channel name, or a channel row.
        :raises ConfigError: for an unknown channel.
        """
        from cmcsync_sql._store import read_events

        return read_events(self.settings.url, channel, prefix=self.settings.table_prefix)
