"""cmcsync-redis: share the stream through Redis Streams, and read it back as typed events.

One process holds the CMC connections and publishes; any number of consumers, anywhere,
read::

    # the producer
    import cmcsync
    from cmcsync_redis import RedisPlugin

    publisher = RedisPlugin(url="redis://127.0.0.1:6379/0", maxlen=100_000)
    with cmcsync.Client(plugins=[publisher]) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        client.wait()

    # a consumer, in another process or on another machine
    from cmcsync_redis import Consumer

    with Consumer("redis://10.0.0.5:6379/0", channels=["crypto_latest_price"]) as consumer:
        for event in consumer.events():
            print(event.crypto_id, event.price)

Installed, the ``cmcsync`` entry point ``redis`` registers this module in every client; it
publishes nothing until ``CMCSYNC_REDIS_URL`` is set. The other ``CMCSYNC_REDIS_*``
variables are listed in :data:`ENV`; a Django or Flask application passes its settings to
:meth:`RedisPlugin.from_settings` instead.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import cmcsync
from cmcsync.events import Event
from cmcsync.storage import WriterError
from cmcsync_redis._entries import EntryError, event_fields, event_from_fields, stream_key
from cmcsync_redis._plugin import WRITER_THREAD, RedisPlugin
from cmcsync_redis._settings import DEFAULT_URL, ENV, RedisSettings

if TYPE_CHECKING:
    from cmcsync_redis._consumer import Consumer, Entry

__all__ = [
    "DEFAULT_URL",
    "ENV",
    "URL_ENV",
    "WRITER_THREAD",
    "Consumer",
    "Entry",
    "EntryError",
    "RedisPlugin",
    "RedisSettings",
    "WriterError",
    "cmcsync_on_close",
    "cmcsync_on_event",
    "cmcsync_subscriptions",
    "default_plugin",
    "event_fields",
    "event_from_fields",
    "stream_key",
]

#: The environment variable that turns the installed plugin on.
URL_ENV = "CMCSYNC_REDIS_URL"


class _Default:
    """The entry point's instance, made on first use (a holder, not a rebound global)."""

    plugin: RedisPlugin | None = None
    lock = threading.Lock()


def default_plugin() -> RedisPlugin | None:
    """The instance behind the entry point, or ``None`` while ``CMCSYNC_REDIS_URL`` is unset.

    Built from the environment on first use, then kept.

    :raises ConfigError: naming the variable whose value cannot be used.
    """
    if not os.environ.get(URL_ENV):
        return _Default.plugin
    with _Default.lock:
        if _Default.plugin is None:
            _Default.plugin = RedisPlugin.from_env()
        return _Default.plugin


def __getattr__(name: str) -> Any:
    # The consumer needs the redis package; the plugin module itself is imported by every
    # client in the environment, so it is loaded only when asked for.
    if name in ("Consumer", "Entry"):
        from cmcsync_redis import _consumer

        return getattr(_consumer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
