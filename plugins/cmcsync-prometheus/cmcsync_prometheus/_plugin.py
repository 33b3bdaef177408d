"""The plugin: hooks that count and time, a collector that reads the clients at scrape time."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import cmcsync
from cmcsync.events import Event
from cmcsync_prometheus._server import MetricsServer
from cmcsync_prometheus._settings import PrometheusSettings

__all__ = ["PrometheusPlugin"]

_live: weakref.WeakSet[PrometheusPlugin] = weakref.WeakSet()

#: The counters of a store plugin's ``stats()`` that say how many events it lost, and why.
_LOST = ("dropped", "rejected", "unwritten")


class PrometheusPlugin:
    """Serve metrics of the clients it is registered in, for Prometheus to scrape.

    Every instance has its own registry (:attr:`registry`, never prometheus_client's global
    one), so several clients, or tests, never share counters. Counters and the latency
    histogram are kept by the hooks, on the dispatcher thread; gauges (connection state,
    queue depth, subscriptions, store plugins' backlog) are read from the clients when the
    endpoint is scraped.

    The endpoint starts when a client starts with the plugin registered (or on
    :meth:`start`) and keeps serving after the client closes, so the last values can be
    scraped; :meth:`close` stops it and joins its thread ``cmcsync-prometheus-http``.

    :param settings: the settings to use as they are; by default, the
        ``CMCSYNC_PROMETHEUS_*`` environment variables, then the defaults of
        :class:`PrometheusSettings`.
    :param changes: settings to change, by attribute name (``port=0``...).
    :raises ConfigError: for a setting that cannot be used.
    """

    def __init__(self, settings: PrometheusSettings | None = None, **changes: Any) -> None:
        base = settings if settings is not None else PrometheusSettings.from_env()
        self.settings: PrometheusSettings = attrs.evolve(base, **changes) if changes else base
        #: The registry holding this plugin's metrics.
        self.registry = CollectorRegistry()
        self._server = MetricsServer(self.registry, self.settings.addr, self.settings.port)
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._last_client: Any = None
        self._lock = threading.Lock()
        self._events = Counter(
            "cmcsync_events",
            "Data events delivered, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "cmcsync_dispatch_latency_seconds",
            "From the server's push time (event ts) to delivery to the plugins, by channel; "
            "includes any clock difference between the server and this machine.",
            ["channel"],
            buckets=self.settings.buckets,
            registry=self.registry,
        )
        self._reconnects = Counter(
            "cmcsync_reconnects",
            "Connections opened again after one was lost.",
            registry=self.registry,
        )
        self._disconnects = Counter(
            "cmcsync_disconnects",
            "Connections lost or closed, by close code.",
            ["code"],
            registry=self.registry,
        )
        self._plugin_errors = Counter(
            "cmcsync_plugin_errors",
            "Plugin hook calls that raised, by plugin and hook.",
            ["plugin", "hook"],
            registry=self.registry,
        )
        self._errors = Counter(
            "cmcsync_errors",
            "Background errors (bad frames, fatal errors), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self._gaps = Counter(
            "cmcsync_gaps",
            "Subscriptions that may have missed data over a reconnect.",
            ["channel"],
            registry=self.registry,
        )
        self._stale = Counter(
            "cmcsync_stale_subscriptions",
            "Silent subscriptions found and what was done (resubscribe, reconnect).",
            ["channel", "action"],
            registry=self.registry,
        )
        self._slow = Counter(
            "cmcsync_slow_consumer_reports",
            "Times the plugins fell behind the socket.",
            registry=self.registry,
        )
        self._per_channel: dict[str, tuple[Any, Any]] = {}
        self.registry.register(_ClientCollector(self._clients))
        _live.add(self)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> PrometheusPlugin:
        """Build from a Django or Flask settings object (``CMCSYNC_PROMETHEUS_*`` names).

        :param settings: ``django.conf.settings``, Flask's ``app.config`` or any mapping.
        :param environ: where names missing from ``settings`` are looked up; ``os.environ``
            by default.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return cls(PrometheusSettings.from_settings(settings, environ=environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrometheusPlugin:
        """Build from the ``CMCSYNC_PROMETHEUS_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls(PrometheusSettings.from_env(environ))

    def __repr__(self) -> str:
        where = f"{self.settings.addr}:{self.port}" if self.port else "not serving"
        return f"<PrometheusPlugin {where}>"

    # --- the endpoint -----------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on, once started (the one picked, with ``port=0``)."""
        return self._server.port

    @property
    def url(self) -> str | None:
        """The metrics URL, once started, e.g. ``http://127.0.0.1:9464/metrics``."""
        port = self.port
        if port is None:
            return None
        host = f"[{self.settings.addr}]" if ":" in self.settings.addr else self.settings.addr
        return f"http://{host}:{port}/metrics"

    def start(self) -> PrometheusPlugin:
        """Start serving, if not already.

        :returns: the plugin, for chaining.
        :raises ConfigError: when the address cannot be listened on (a port in use).
        """
        try:
            self._server.start()
        except OSError as exc:
            raise cmcsync.ConfigError(
                f"cannot serve metrics on {self.settings.addr}:{self.settings.port} ({exc}); "
                "choose another port, or 0 for a free one (CMCSYNC_PROMETHEUS_PORT)",
                param="port",
            ) from exc
        return self

    def close(self) -> None:
        """Stop serving and join the endpoint's thread; :meth:`start` serves again."""
        self._server.close()

    def watch(self, client: Any) -> None:
        """Read ``client``'s gauges at scrape time (done by the hooks for registered clients)."""
        if client is not self._last_client:
            with self._lock:
                self._clients.add(client)
                self._last_client = client

    # --- hooks ------------------------------------------------------------------------------

    @cmcsync.hookimpl
    def cmcsync_subscriptions(self, client: Any) -> None:
        # The client is starting: the endpoint should be up before the first event.
        self.watch(client)
        self.start()

    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Event, client: Any) -> None:
        if client is not self._last_client:
            self.watch(client)
        children = self._per_channel.get(event.channel)
        if children is None:
            children = self._per_channel[event.channel] = (
                self._events.labels(event.channel),
                self._latency.labels(event.channel),
            )
        children[0].inc()
        children[1].observe(max(0.0, time.time() - event.ts / 1000.0))

    @cmcsync.hookimpl
    def cmcsync_on_connect(self, client: Any, reconnect: bool) -> None:
        self.watch(client)
        self.start()
        if reconnect:
            self._reconnects.inc()

    @cmcsync.hookimpl
    def cmcsync_on_disconnect(self, code: int | None) -> None:
        self._disconnects.labels("none" if code is None else str(code)).inc()

    @cmcsync.hookimpl
    def cmcsync_on_gap(self, channel: str) -> None:
        self._gaps.labels(channel).inc()

    @cmcsync.hookimpl(optionalhook=True)
    def cmcsync_on_stale(self, channel: str, action: str) -> None:
        self._stale.labels(channel, action).inc()

    @cmcsync.hookimpl
    def cmcsync_on_error(self, error: BaseException) -> None:
        self._errors.labels(str(getattr(error, "kind", None) or type(error).__name__)).inc()

    @cmcsync.hookimpl
    def cmcsync_on_plugin_error(self, plugin_name: str, hook_name: str) -> None:
        self._plugin_errors.labels(plugin_name, hook_name).inc()

    @cmcsync.hookimpl
    def cmcsync_on_slow_consumer(self) -> None:
        self._slow.inc()


class _ClientCollector(Collector):
    """Gauges read from the watched clients when the endpoint is scraped."""

    def __init__(self, clients: weakref.WeakSet[Any]) -> None:
        self._clients = clients

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "cmcsync_connected", "1 while the client has a connection open, else 0."
        )
        connections = GaugeMetricFamily(
            "cmcsync_open_connections", "WebSocket connections open now."
        )
        depth = GaugeMetricFamily(
            "cmcsync_queue_depth", "Events waiting for the dispatcher thread."
        )
        capacity = GaugeMetricFamily(
            "cmcsync_queue_capacity", "Events the queue holds before its overflow policy."
        )
        subscriptions = GaugeMetricFamily(
            "cmcsync_subscriptions",
            "Wanted subscriptions, by channel and state.",
            labels=["channel", "state"],
        )
        buffered = GaugeMetricFamily(
            "cmcsync_plugin_buffered",
            "Events a store plugin holds, not yet written.",
            labels=["plugin"],
        )
        written = CounterMetricFamily(
            "cmcsync_plugin_written", "Events a store plugin has written.", labels=["plugin"]
        )
        lost = CounterMetricFamily(
            "cmcsync_plugin_lost",
            "Events a store plugin could not write, by reason (dropped from a full buffer, "
            "rejected by the store, unwritten when it stopped).",
            labels=["plugin", "reason"],
        )
        totals = {"connected": 0.0, "connections": 0.0, "depth": 0.0, "capacity": 0.0}
        states: dict[tuple[str, str], int] = {}
        for client in list(self._clients):
            stats = _stats(client)
            totals["connected"] = max(totals["connected"], float(bool(client.connected)))
            totals["connections"] += _number(stats.get("open_connections"), client.connected)
            dispatch = stats.get("dispatch") or {}
            totals["depth"] += _number(dispatch.get("queue_depth"), 0)
            totals["capacity"] += _number(dispatch.get("queue_capacity"), 0)
            for sub, state in client.subscriptions().items():
                key = (sub.channel, getattr(state, "value", str(state)))
                states[key] = states.get(key, 0) + 1
            for name, plugin in client.plugin_manager.list_name_plugin():
                found = _store_stats(plugin)
                if found is None:
                    continue
                buffered.add_metric([name], found["buffered"] + found.get("in_flight", 0))
                written.add_metric([name], found["written"])
                for reason in _LOST:
                    lost.add_metric([name, reason], found.get(reason, 0))
        connected.add_metric([], totals["connected"])
        connections.add_metric([], totals["connections"])
        depth.add_metric([], totals["depth"])
        capacity.add_metric([], totals["capacity"])
        for (channel, state), count in sorted(states.items()):
            subscriptions.add_metric([channel, state], count)
        yield from (connected, connections, depth, capacity, subscriptions)
        yield from (buffered, written, lost)


def _stats(client: Any) -> Mapping[str, Any]:
    try:
        found = client.stats()
    except Exception:  # noqa: BLE001 - a scrape must never fail because of one client
        return {}
    return found if isinstance(found, Mapping) else {}


def _store_stats(plugin: object) -> Mapping[str, Any] | None:
    """A plugin's ``stats()`` if it reports a store's backlog (``buffered`` and ``written``)."""
    method = getattr(plugin, "stats", None)
    if not callable(method) or isinstance(plugin, type):
        return None
    try:
        found = method()
    except Exception:  # noqa: BLE001 - another plugin's bug must not break the scrape
        return None
    if not isinstance(found, Mapping):
        return None
    if not all(isinstance(found.get(key), int) for key in ("buffered", "written")):
        return None
    return found


def _number(value: Any, default: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float(default)


@atexit.register
def _close_all() -> None:
    for plugin in list(_live):
        plugin.close()
