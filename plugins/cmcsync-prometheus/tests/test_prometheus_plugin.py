"""cmcsync-prometheus: stream from the simulator, scrape the endpoint, compare."""

from __future__ import annotations

import importlib.util
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cmcsync_prometheus
import pytest
from cmcsync_prometheus import HTTP_THREAD, PrometheusPlugin, PrometheusSettings
from prometheus_client.parser import text_string_to_metric_families

import cmcsync
from cmcsync.plugins import make_plugin_manager, plugin_info
from cmcsync.testing import EventRecorder, Simulator

KEY = "test-key"
CAKE = "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"
PRICES = "market@crypto_latest_price"
KLINES = "onchain@kline"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(plugin: PrometheusPlugin) -> Samples:
    """Every sample the endpoint serves: (name, sorted labels) -> value."""
    assert plugin.url is not None
    # The URL is the plugin's own http://127.0.0.1 endpoint, never a file: or other scheme.
    with urllib.request.urlopen(plugin.url, timeout=5) as response:  # noqa: S310
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), speed=100.0, seed=5) as server:
        yield server


@pytest.fixture
def metrics() -> Iterator[PrometheusPlugin]:
    plugin = PrometheusPlugin(port=0)
    yield plugin
    plugin.close()


def client_for(sim: Simulator, *plugins: object, **kwargs: Any) -> cmcsync.Client:
    return cmcsync.Client(
        api_key=KEY,
        url=sim.url,
        autoload=False,
        plugins=list(plugins),
        backoff=cmcsync.Backoff(base=0.05, cap=0.2),
        **kwargs,
    )


def test_the_scrape_matches_what_the_client_delivered(
    sim: Simulator, metrics: PrometheusPlugin
) -> None:
    recorder = EventRecorder()
    client = client_for(sim, recorder, metrics)
    with client:
        assert metrics.port is not None and metrics.port > 0  # serving from the start
        client.subscribe(PRICES, crypto_ids=[1, 1027, 1839, 5426, 52])
        client.subscribe(KLINES, platform_id=14, address=[CAKE], interval="1s")
        recorder.wait_for(
            lambda: (
                len(recorder.by_channel(PRICES)) >= 20 and len(recorder.by_channel(KLINES)) >= 20
            ),
            timeout=15,
        )
        live = scrape(metrics)
        assert value(live, "cmcsync_connected") == 1
        assert value(live, "cmcsync_open_connections") == 1
        assert value(live, "cmcsync_queue_capacity") == client.dispatch_config.queue_size
        assert 0 <= value(live, "cmcsync_queue_depth") <= client.dispatch_config.queue_size
        assert value(live, "cmcsync_subscriptions", channel=PRICES, state="active") == 5
        assert value(live, "cmcsync_subscriptions", channel=KLINES, state="active") == 1
    final = scrape(metrics)  # the endpoint outlives the client, for the last values
    for channel in (PRICES, KLINES):
        delivered = len(recorder.by_channel(channel))
        assert value(final, "cmcsync_events_total", channel=channel) == delivered
        assert value(final, "cmcsync_dispatch_latency_seconds_count", channel=channel) == delivered
        within_10s = value(
            final, "cmcsync_dispatch_latency_seconds_bucket", channel=channel, le="10.0"
        )
        assert within_10s == delivered  # the simulator is on this machine
    assert value(final, "cmcsync_connected") == 0
    assert value(final, "cmcsync_reconnects_total") == 0
    assert value(final, "cmcsync_disconnects_total", code="1000") == 1


def test_reconnects_and_plugin_errors_are_counted(
    sim: Simulator, metrics: PrometheusPlugin
) -> None:
    class Broken:
        @cmcsync.hookimpl
        def cmcsync_on_crypto_latest_price(self, event: Any) -> None:
            raise RuntimeError("a bug in someone else's plugin")

    recorder = EventRecorder()
    dispatch = cmcsync.DispatchConfig(max_plugin_failures=None)
    with client_for(sim, recorder, metrics, Broken(), dispatch=dispatch) as client:
        client.subscribe(PRICES, crypto_ids=[1])
        recorder.wait_for(lambda: len(recorder.hook_calls("cmcsync_on_plugin_error")) >= 3, 10)
        sim.drop_all()
        recorder.wait_for(
            lambda: any(call["reconnect"] for call in recorder.hook_calls("cmcsync_on_connect")),
            timeout=10,
        )
        recorder.wait_for(lambda: len(recorder.hook_calls("cmcsync_on_gap")) >= 1, timeout=10)
        samples = scrape(metrics)
    errors = len(recorder.hook_calls("cmcsync_on_plugin_error"))  # final: the client is closed
    assert value(samples, "cmcsync_reconnects_total") == 1
    assert value(samples, "cmcsync_disconnects_total", code="none") >= 1
    assert value(samples, "cmcsync_gaps_total", channel=PRICES) == 1
    counted = value(
        scrape(metrics),
        "cmcsync_plugin_errors_total",
        plugin="Broken",
        hook="cmcsync_on_crypto_latest_price",
    )
    assert counted == errors


def test_a_store_plugin_backlog_is_exposed(sim: Simulator, metrics: PrometheusPlugin) -> None:
    class Store:
        """Looks like cmcsync-sql or cmcsync-redis to the collector."""

        def stats(self) -> dict[str, Any]:
            return {"buffered": 7, "in_flight": 3, "written": 90, "dropped": 4, "rejected": 1}

        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any) -> None:
            pass

    with client_for(sim, metrics, Store()) as client:
        client.subscribe(PRICES, crypto_ids=[1])
        samples = scrape(metrics)
    assert value(samples, "cmcsync_plugin_buffered", plugin="Store") == 10
    assert value(samples, "cmcsync_plugin_written_total", plugin="Store") == 90
    assert value(samples, "cmcsync_plugin_lost_total", plugin="Store", reason="dropped") == 4
    assert value(samples, "cmcsync_plugin_lost_total", plugin="Store", reason="unwritten") == 0


def test_each_plugin_has_a_registry_and_a_port_of_its_own(sim: Simulator) -> None:
    one, two = PrometheusPlugin(port=0), PrometheusPlugin(port=0)
    try:
        recorder = EventRecorder()
        with client_for(sim, recorder, one) as client:
            client.subscribe(PRICES, crypto_ids=[1])
            recorder.wait_for_events(3, timeout=10)
        two.start()
        assert one.port != two.port
        assert value(scrape(one), "cmcsync_events_total", channel=PRICES) >= 3
        assert ("cmcsync_events_total", (("channel", PRICES),)) not in scrape(two)
    finally:
        one.close()
        two.close()
    assert HTTP_THREAD not in [thread.name for thread in threading.enumerate()]


def test_the_example_in_the_docs_runs(sim: Simulator) -> None:
    example = load_example("serve_metrics.py")
    text = example.main(sim.url, api_key=KEY, count=10)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert value(samples, "cmcsync_events_total", channel=PRICES) >= 10
    assert value(samples, "cmcsync_connected") == 1


def test_a_port_in_use_is_a_clear_error(sim: Simulator) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plugin = PrometheusPlugin(port=port)
        says = f"127.0.0.1:{port}.*CMCSYNC_PROMETHEUS_PORT"
        with pytest.raises(cmcsync.ConfigError, match=says):
            plugin.start()
        client = client_for(sim, plugin)
        with pytest.raises(cmcsync.ConfigError, match=says):
            client.start()  # as the client starts, not at the first event
        client.close()
    assert plugin.url is None


def test_settings_come_from_the_environment_and_the_host() -> None:
    settings = PrometheusSettings.from_env(
        {"CMCSYNC_PROMETHEUS_PORT": "0", "CMCSYNC_PROMETHEUS_BUCKETS": "0.01,0.1,1"}
    )
    assert (settings.port, settings.addr, settings.buckets) == (0, "127.0.0.1", (0.01, 0.1, 1.0))

    class DjangoSettings:
        CMCSYNC_PROMETHEUS_PORT = 9999
        CMCSYNC_PROMETHEUS_ADDR = "::1"

    plugin = PrometheusPlugin.from_settings(
        DjangoSettings(), environ={"CMCSYNC_PROMETHEUS_PORT": "1"}
    )
    assert (plugin.settings.port, plugin.settings.addr) == (9999, "::1")
    assert PrometheusSettings.from_env({}).port == cmcsync_prometheus.DEFAULT_PORT


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CMCSYNC_PROMETHEUS_PORT", "http", "port number"),
        ("CMCSYNC_PROMETHEUS_PORT", "70000", "0-65535"),
        ("CMCSYNC_PROMETHEUS_BUCKETS", "1,0.1", "increasing"),
        ("CMCSYNC_PROMETHEUS_ADDR", " ", "address"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(cmcsync.ConfigError, match=says) as raised:
        PrometheusSettings.from_env({name: value})
    assert name in str(raised.value)


def test_the_module_serves_only_once_a_port_is_set(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmcsync_prometheus._Default, "plugin", None)
    monkeypatch.delenv("CMCSYNC_PROMETHEUS_PORT", raising=False)
    [info] = plugin_info(make_plugin_manager(autoload=False, plugins=[cmcsync_prometheus]))
    assert "cmcsync_on_event" in info.hooks
    recorder = EventRecorder()
    with client_for(sim, recorder, cmcsync_prometheus) as client:
        client.subscribe(PRICES, crypto_ids=[1])
        recorder.wait_for_events(1, timeout=10)
    assert cmcsync_prometheus.default_plugin() is None
    monkeypatch.setenv("CMCSYNC_PROMETHEUS_PORT", "0")
    try:
        with client_for(sim, recorder, cmcsync_prometheus) as client:
            plugin = cmcsync_prometheus.default_plugin()
            assert plugin is not None and plugin.port
            client.subscribe(PRICES, crypto_ids=[1])
            recorder.wait_for_events(len(recorder.events) + 2, timeout=10)
            assert value(scrape(plugin), "cmcsync_events_total", channel=PRICES) >= 2
    finally:
        found = cmcsync_prometheus.default_plugin()
        if found is not None:
            found.close()


def load_example(name: str) -> Any:
    """Import a script of the package's ``examples`` folder, which the docs show."""
    path = Path(__file__).resolve().parents[1] / "examples" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
