"""cmcsync-prometheus: watch the stream with Prometheus.

In code, register an instance; its endpoint starts with the client::

    import cmcsync
    from cmcsync_prometheus import PrometheusPlugin

    metrics = PrometheusPlugin(port=9464)
    with cmcsync.Client(plugins=[metrics]) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        print("scrape", metrics.url)
        client.wait()
    metrics.close()

Installed, the ``cmcsync`` entry point ``prometheus`` registers this module in every client;
it serves nothing until ``CMCSYNC_PROMETHEUS_PORT`` is set (``0`` picks a free port), so
installing the package never opens a port a program did not ask for. A Django or Flask
application passes its settings to :meth:`PrometheusPlugin.from_settings` instead.

The metrics (all prefixed ``cmcsync_``): ``events_total{channel}``,
``dispatch_latency_seconds{channel}`` (histogram), ``reconnects_total``,
``disconnects_total{code}``, ``plugin_errors_total{plugin,hook}``, ``errors_total{kind}``,
``gaps_total{channel}``, ``stale_subscriptions_total{channel,action}``,
``slow_consumer_reports_total``; read at scrape time: ``connected``, ``open_connections``,
``queue_depth``, ``queue_capacity``, ``subscriptions{channel,state}``, and for store plugins
(cmcsync-sql, cmcsync-redis) ``plugin_buffered{plugin}``, ``plugin_written_total{plugin}``,
``plugin_lost_total{plugin,reason}``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import cmcsync
from cmcsync.events import Event
from cmcsync_prometheus._settings import (
    DEFAULT_PORT,
    ENV,
    HTTP_THREAD,
    LATENCY_BUCKETS,
    PrometheusSettings,
)

if TYPE_CHECKING:
    from cmcsync_prometheus._plugin import PrometheusPlugin

__all__ = [
    "DEFAULT_PORT",
    "ENV",
    "HTTP_THREAD",
    "LATENCY_BUCKETS",
    "PORT_ENV",
    "PrometheusPlugin",
    "PrometheusSettings",
    "cmcsync_on_connect",
    "cmcsync_on_disconnect",
    "cmcsync_on_error",
    "cmcsync_on_event",
    "cmcsync_on_gap",
    "cmcsync_on_plugin_error",
    "cmcsync_on_slow_consumer",
    "cmcsync_on_stale",
    "cmcsync_subscriptions",
    "default_plugin",
]

#: The environment variable that turns the installed plugin on.
PORT_ENV = "CMCSYNC_PROMETHEUS_PORT"


class _Default:
    """The entry point's instance, made on first use (a holder, not a rebound global)."""

    plugin: PrometheusPlugin | None = None
    lock = threading.Lock()


def default_plugin() -> PrometheusPlugin | None:
    """The instance behind the entry point, or ``None`` while ``CMCSYNC_PROMETHEUS_PORT`` is unset.

    Built from the environment on first use, then kept; one endpoint serves every client of
    the process.

    :raises ConfigError: naming the variable whose value cannot be used.
    """
    if not os.environ.get(PORT_ENV):
        return _Default.plugin
    with _Default.lock:
        if _Default.plugin is None:
            from cmcsync_prometheus._plugin import PrometheusPlugin

            _Default.plugin = PrometheusPlugin.from_env()
        return _Default.plugin


def __getattr__(name: str) -> Any:
    # prometheus_client is imported only when a plugin is made: this module is imported by
    # every client in the environment, most of which never serve metrics.
    if name == "PrometheusPlugin":
        from cmcsync_prometheus._plugin import PrometheusPlugin

        return PrometheusPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The entry point registers this module; its hooks delegate to the default instance.


@cmcsync.hookimpl
def cmcsync_subscriptions(client: Any) -> None:
    plugin = default_plugin()
    if plugin is not None:
        plugin.cmcsync_subscriptions(client)


@cmcsync.hookimpl
def cmcsync_on_event(event: Event, client: Any) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_event(event, client)


@cmcsync.hookimpl
def cmcsync_on_connect(client: Any, reconnect: bool) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_connect(client, reconnect)


@cmcsync.hookimpl
def cmcsync_on_disconnect(code: int | None) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_disconnect(code)


@cmcsync.hookimpl
def cmcsync_on_gap(channel: str) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_gap(channel)


@cmcsync.hookimpl(optionalhook=True)
def cmcsync_on_stale(channel: str, action: str) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_stale(channel, action)


@cmcsync.hookimpl
def cmcsync_on_error(error: BaseException) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_error(error)


@cmcsync.hookimpl
def cmcsync_on_plugin_error(plugin_name: str, hook_name: str) -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_plugin_error(plugin_name, hook_name)


@cmcsync.hookimpl
def cmcsync_on_slow_consumer() -> None:
    plugin = _Default.plugin
    if plugin is not None:
        plugin.cmcsync_on_slow_consumer()
