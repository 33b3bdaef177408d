"""cmcsync-sql: keep the stream in SQL tables, one per channel (SQLite or PostgreSQL).

In code, register an instance::

    import cmcsync
    from cmcsync_sql import SqlPlugin

    store = SqlPlugin(url="postgresql://cmc:secret@127.0.0.1/market", channels=["kline"])
    with cmcsync.Client(plugins=[store]) as client:
        client.subscribe("onchain@kline", platform_id=14, address=["0x..."], interval="1m")
        client.wait(timeout=3600)
    print(store.stats()["written"], store.read_events("kline")[-1])

Installed, the ``cmcsync`` entry point ``sql`` registers this module in every client; it
stores nothing until ``CMCSYNC_SQL_URL`` is set, so installing the package never makes a
program write a database it did not ask for. The other ``CMCSYNC_SQL_*`` variables are
listed in :data:`ENV`; a Django or Flask application passes its settings to
:meth:`SqlPlugin.from_settings` instead.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import cmcsync
from cmcsync.events import Event
from cmcsync.storage import WriterError
from cmcsync_sql._plugin import WRITER_THREAD, SqlPlugin
from cmcsync_sql._settings import DEFAULT_URL, ENV, SqlSettings

if TYPE_CHECKING:
    from cmcsync.channels import Channel

__all__ = [
    "DEFAULT_URL",
    "ENV",
    "URL_ENV",
    "WRITER_THREAD",
    "SqlPlugin",
    "SqlSettings",
    "WriterError",
    "cmcsync_on_close",
    "cmcsync_on_event",
    "cmcsync_subscriptions",
    "default_plugin",
    "read_events",
]

#: The environment variable that turns the installed plugin on.
URL_ENV = "CMCSYNC_SQL_URL"


class _Default:
    """The entry point's instance, made on first use (a holder, not a rebound global)."""

    plugin: SqlPlugin | None = None
    lock = threading.Lock()


def default_plugin() -> SqlPlugin | None:
    """The instance behind the entry point, or ``None`` while ``CMCSYNC_SQL_URL`` is unset.

    Built from the environment on first use, then kept.

    :raises ConfigError: naming the variable whose value cannot be used.
    """
    if not os.environ.get(URL_ENV):
        return _Default.plugin
    with _Default.lock:
        if _Default.plugin is None:
            _Default.plugin = SqlPlugin.from_env()
        return _Default.plugin


def read_events(url: str, channel: str | Channel, *, table_prefix: str = "cmcsync_") -> list[Event]:
    """Read back the events a :class:`SqlPlugin` stored for ``channel``, oldest first.

    Each row becomes the event it was written from, with the same values and types; an
    interval channel (klines, unique traders) gives each interval once, at its latest values.

    :param url: the database URL the plugin wrote to.
    :param channel: a wire or short channel name, or a channel row.
    :param table_prefix: the plugin's ``table_prefix``.
    :raises ConfigError: for an unusable URL or an unknown channel.
    """
    from cmcsync_sql._store import read_events as read

    settings = SqlSettings(url=url, table_prefix=table_prefix)
    return read(settings.url, channel, prefix=settings.table_prefix)


# The entry point registers this module; its hooks delegate to the default instance.


@cmcsync.hookimpl
def cmcsync_subscriptions() -> None:
    # Called as the client starts, where a configuration error stops it at once instead of
    # failing on every event.
    default_plugin()


@cmcsync.hookimpl
def cmcsync_on_event(event: Event, client: Any) -> None:
    plugin = _Default.plugin  # made by cmcsync_subscriptions as the client started
    if plugin is not None:
        plugin.cmcsync_on_event(event, client)


@cmcsync.hookimpl(optionalhook=True)
def cmcsync_on_close(client: Any) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_close(client)
