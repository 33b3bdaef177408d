"""cmcsync-redis against the simulator and a real redis-server: publish, consume, survive."""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import cmcsync_redis
import pytest
from cmcsync_redis import (
    Consumer,
    Entry,
    EntryError,
    RedisPlugin,
    RedisSettings,
    WriterError,
    event_fields,
    event_from_fields,
    stream_key,
)
from redistesting import CHANNELS, FEED, KEY, RedisServer, stream

import cmcsync
from cmcsync import Backoff
from cmcsync.channels import CHANNELS as ALL_CHANNELS
from cmcsync.channels import get_channel
from cmcsync.events import (
    CryptoLatestPrice,
    Event,
    HolderTopShare,
    Kline,
    PoolMetric,
    PoolMetricWindow,
    TokenMetric,
    TokenMetricWindow,
    Transaction,
    WalletTokenBalance,
)
from cmcsync.plugins import make_plugin_manager, plugin_info
from cmcsync.testing import EventRecorder, Simulator, wait_until

FAST = Backoff(base=0.02, cap=0.1)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def consume(url: str, channels: Sequence[str] = CHANNELS, **options: Any) -> list[Event]:
    with Consumer(url, channels=channels, **options) as consumer:
        return list(consumer.events(timeout=0.3))


def by_channel(events: Sequence[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {channel: [] for channel in CHANNELS}
    for event in events:
        out[event.channel].append(event)
    return out


def reports(recorder: EventRecorder, plugin: str = "RedisPlugin") -> list[WriterError]:
    """The writer's problems the client reported, with combined reports taken apart."""
    found: list[WriterError] = []
    for call in recorder.hook_calls("cmcsync_on_plugin_error"):
        if call["plugin_name"] == plugin:
            error = call["error"]
            found.extend(error.reports or [error])
    return found


# --- the judged test: consumers get exactly what the client received ---------------------------


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_consumers_get_exactly_what_the_client_received(
    sim: Simulator, redis_server: RedisServer, decimal: bool
) -> None:
    keys = prefix()
    plugin = RedisPlugin(url=redis_server.url, prefix=keys)
    recorder = stream(sim, plugin, decimal=decimal)
    received = by_channel(consume(redis_server.url, prefix=keys))
    assert received == by_channel(recorder.events)
    assert all(len(events) >= 8 for events in received.values())
    price = received["market@crypto_latest_price"][0]
    assert isinstance(price, CryptoLatestPrice)
    assert isinstance(price.price, Decimal if decimal else float)
    with redis_server.client() as look:
        for channel, events in received.items():
            assert look.xlen(stream_key(channel, prefix=keys)) == len(events)
    stats = plugin.stats()
    assert stats["written"] == stats["accepted"] == len(recorder.events)
    assert stats["state"] == "stopped"  # the client's close joined the writer


def test_one_stream_per_subscription(sim: Simulator, redis_server: RedisServer) -> None:
    keys = prefix()
    plugin = RedisPlugin(url=redis_server.url, prefix=keys, streams="subscription")
    recorder = stream(sim, plugin, per_channel=3)
    wanted = {
        stream_key(channel, scalar, prefix=keys): (channel, scalar)
        for channel, params in FEED
        for scalar in get_channel(channel).split(params)
    }
    with Consumer(redis_server.url, streams=list(wanted)) as consumer:
        entries = list(consumer.entries(timeout=0.3))
    assert len(entries) == len(recorder.events)
    for key, (channel, scalar) in wanted.items():
        row = get_channel(channel)
        got = [entry.event for entry in entries if entry.stream == key]
        assert got == [
            e for e in recorder.by_channel(channel) if row.scalar_form(e.params) == scalar
        ]


def test_redis_down_mid_stream_loses_nothing_the_buffer_held(
    sim: Simulator, make_redis: Callable[[], RedisServer]
) -> None:
    server = make_redis()
    plugin = RedisPlugin(url=server.url, backoff=FAST)
    live: list[Event] = []
    stop = threading.Event()

    def read_live() -> None:
        with Consumer(server.url, channels=CHANNELS, backoff=FAST) as consumer:
            while not stop.is_set():
                live.extend(consumer.events(timeout=0.2))

    reader = threading.Thread(target=read_live, name="test-live-consumer")
    reader.start()

    def outage(client: cmcsync.Client, recorder: EventRecorder) -> None:
        server.stop(save=True)
        stopped_at = len(recorder.events)
        recorder.wait_for(
            lambda: plugin.stats()["failures"] > 0 and len(recorder.events) > stopped_at + 100,
            timeout=10,
        )
        assert plugin.stats()["buffered"] + plugin.stats()["in_flight"] >= 100
        server.start()
        recorder.wait_for(lambda: plugin.stats()["failures"] == 0, timeout=10)

    try:
        recorder = stream(sim, plugin, during=outage)
        wait_until(lambda: len(live) >= len(recorder.events))
    finally:
        stop.set()
        reader.join(10)
    expected = by_channel(recorder.events)
    assert by_channel(consume(server.url)) == expected
    assert by_channel(live) == expected  # a consumer reading through the outage too
    stats = plugin.stats()
    assert stats["dropped"] == stats["unwritten"] == stats["rejected"] == 0
    assert stats["outages"] == 1 and stats["failed_attempts"] >= 1
    [unavailable] = reports(recorder)
    assert unavailable.kind == "unavailable" and f":{server.port}" in str(unavailable)


def test_what_a_tiny_buffer_cannot_hold_is_counted_and_reported(
    sim: Simulator, make_redis: Callable[[], RedisServer]
) -> None:
    server = make_redis()
    plugin = RedisPlugin(url=server.url, backoff=FAST, buffer_size=5)

    def outage(client: cmcsync.Client, recorder: EventRecorder) -> None:
        server.stop(save=True)
        recorder.wait_for(lambda: plugin.stats()["dropped"] >= 50, timeout=10)
        server.start()
        recorder.wait_for(lambda: any(r.kind == "dropped" for r in reports(recorder)), 10)

    recorder = stream(sim, plugin, during=outage)
    stats = plugin.stats()
    consumed = consume(server.url)
    assert len(consumed) + stats["dropped"] == len(recorder.events)
    assert stats["unwritten"] == stats["rejected"] == 0
    # What arrived came once and in order: in each channel, a subsequence of what the
    # client received.
    for channel, events in by_channel(consumed).items():
        delivered = iter(recorder.by_channel(channel))
        assert all(any(event == other for other in delivered) for event in events), channel
    kinds = {report.kind for report in reports(recorder)}
    assert {"unavailable", "overflow", "dropped"} <= kinds
    assert sum(r.count for r in reports(recorder) if r.kind == "dropped") == stats["dropped"]


# --- consumers -----------------------------------------------------------------------------------


def publish(server: RedisServer, events: Sequence[Event], **settings: Any) -> RedisPlugin:
    plugin = RedisPlugin(url=server.url, **settings)
    client = _Client()
    for event in events:
        plugin.cmcsync_on_event(event, client)
    plugin.close()
    return plugin


class _Client:
    decimal = False


def klines(n: int, start: int = 0) -> list[Kline]:
    params = {"platform_id": 14, "address": "0xabc", "interval": "1m"}
    return [
        Kline(channel="onchain@kline", params=params, ts=start + i, open_ts=60_000 * i, close=i)
        for i in range(n)
    ]


def test_a_group_shares_the_entries_and_hands_back_what_was_not_acknowledged(
    redis_server: RedisServer,
) -> None:
    keys = prefix()
    events = klines(40)
    publish(redis_server, events, prefix=keys)
    options: dict[str, Any] = {"channels": ["kline"], "prefix": keys, "group": "g", "count": 5}
    got: dict[str, list[Entry]] = {"a": [], "b": []}
    with (
        Consumer(redis_server.url, name="a", **options) as a,
        Consumer(redis_server.url, name="b", **options) as b,
    ):
        from_a = a.entries(timeout=0.3)
        from_b = b.entries(timeout=0.3)
        for entry_a, entry_b in zip(from_a, from_b):  # noqa: B905 - b goes on after a stops
            got["a"].append(entry_a)
            got["b"].append(entry_b)
            if len(got["a"]) == 10:
                break  # a stops while holding its tenth entry, unacknowledged
        got["b"].extend(from_b)
    assert len(got["a"]) == 10
    shared = sorted(got["a"] + got["b"], key=lambda entry: entry.event.ts)
    assert [entry.event for entry in shared] == events
    # "a" comes back: what it was handed and did not finish (its tenth entry, and the rest of
    # the batch it had fetched) is handed to it again, first; nothing else is.
    with Consumer(redis_server.url, name="a", **options) as again:
        redelivered = list(again.entries(timeout=0.3))
    assert redelivered[0].id == got["a"][-1].id
    finished = [entry.id for entry in got["a"][:-1] + got["b"]]
    again_ids = [entry.id for entry in redelivered]
    assert sorted(finished + again_ids) == sorted(entry.id for entry in shared)


def test_reading_from_now_on_skips_what_was_there(redis_server: RedisServer) -> None:
    keys = prefix()
    publish(redis_server, klines(5), prefix=keys)
    with Consumer(redis_server.url, channels=["kline"], prefix=keys, start="$") as consumer:
        later = klines(3, start=100)
        publish(redis_server, later, prefix=keys)
        assert list(consumer.events(timeout=0.3)) == later


def test_an_entry_of_someone_else_is_skipped_not_fatal(redis_server: RedisServer) -> None:
    keys = prefix()
    with redis_server.client() as look:
        look.xadd(stream_key("kline", prefix=keys), {"hello": "world"})
    publish(redis_server, klines(2), prefix=keys)
    with Consumer(redis_server.url, channels=["kline"], prefix=keys) as consumer:
        assert list(consumer.events(timeout=0.3)) == klines(2)
        assert consumer.skipped == 1


def test_streams_are_trimmed_to_maxlen(redis_server: RedisServer) -> None:
    keys = prefix()
    publish(redis_server, klines(50), prefix=keys, maxlen=10, approximate=False)
    assert consume(redis_server.url, ["kline"], prefix=keys) == klines(50)[-10:]


def test_a_key_of_another_type_costs_only_its_events(redis_server: RedisServer) -> None:
    keys = prefix()
    with redis_server.client() as look:
        look.set(stream_key("kline", prefix=keys), "not a stream")
    prices = [
        CryptoLatestPrice(
            channel="market@crypto_latest_price",
            params={"crypto_ids": 1},
            ts=i,
            crypto_id=1,
            price=float(i),
        )
        for i in range(3)
    ]
    plugin = RedisPlugin(url=redis_server.url, prefix=keys)
    client = _Client()
    for event in (prices[0], *klines(2), *prices[1:]):
        plugin.cmcsync_on_event(event, client)
    with pytest.raises(WriterError) as raised:
        plugin.cmcsync_on_close(client)
    kinds = {r.kind for r in (raised.value.reports or [raised.value])}
    assert kinds == {"rejected"} and "WRONGTYPE" in str(raised.value)
    assert consume(redis_server.url, ["crypto_latest_price"], prefix=keys) == prices
    assert (plugin.stats()["written"], plugin.stats()["rejected"]) == (3, 2)


def test_the_example_in_the_docs_runs(
    sim: Simulator, make_redis: Callable[[], RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_redis()  # the example uses the default prefix: a server of its own
    example = load_example("share_stream.py")
    written = example.publish(sim.url, server.url, api_key=KEY, count=15)
    assert written >= 15
    seen = example.consume(server.url, group="printers", idle=0.3)
    assert len(seen) == written
    assert capsys.readouterr().out.count("market@crypto_latest_price") >= 1


# --- entries ----------------------------------------------------------------------------------


#: Events of several classes, with values that test exactness; the second item says whether
#: they come from a client built with decimal=True.
SAMPLES: list[tuple[Event, bool]] = [
    (
        CryptoLatestPrice(
            channel="market@crypto_latest_price",
            params={"crypto_ids": 1},
            ts=1,
            crypto_id=1,
            price=Decimal("80123.456789012345678901"),
            volume_24h=Decimal("1E+2"),
            percent_change_24h=Decimal("-0.000"),
            extra={"new": Decimal("5"), "list": [1, Decimal("2.50"), None, True, "x"]},
        ),
        True,
    ),
    (
        CryptoLatestPrice(
            channel="market@crypto_latest_price",
            params={"crypto_ids": "1"},
            ts=2,
            crypto_id=1,
            price=0.1 + 0.2,
            market_cap=float("inf"),
            extra={"p": "not a number"},
        ),
        False,
    ),
    (
        Transaction(
            channel="onchain@transaction",
            params={"platform_id": 14, "address": "0xAbC"},
            ts=3,
            side="",
            excluded=False,
            tx_hash="0x1",
            log_index=0,
            token0_amount=1e-300,
        ),
        False,
    ),
    (
        TokenMetric(
            channel="onchain@token_metric",
            params={"platform_id": 14, "address": "0xabc"},
            ts=4,
            windows={
                "5m": TokenMetricWindow(window="5m", txs=3, volume_usd=Decimal("1.10")),
                "1h": TokenMetricWindow(window="1h", extra={"odd": [Decimal("1.5")]}),
            },
        ),
        True,
    ),
    (
        PoolMetric(
            channel="onchain@pool_metric",
            params={"platform_id": 14, "pool_address": "0xpool"},
            ts=5,
            windows={"30m": PoolMetricWindow(buy_volume_usd=2.5)},
        ),
        False,
    ),
    (
        HolderTopShare(
            channel="onchain@holders_metrics",
            params={"platform_id": 14, "address": "0xabc"},
            ts=6,
            kind="top_share",
            top10_percent=Decimal("12.5"),
        ),
        True,
    ),
    (
        WalletTokenBalance(
            channel="onchain@holder_wallet_update",
            params={"platform_id": 16, "wallet_address": "So1ana"},
            ts=7,
            kind="token_balance",
            balance=Decimal("0.000000001"),
            block_height=2**62,
        ),
        True,
    ),
]


@pytest.mark.parametrize(("event", "decimal"), SAMPLES, ids=[type(e).__name__ for e, _ in SAMPLES])
def test_an_entry_rebuilds_the_event_with_its_types(event: Event, decimal: bool) -> None:
    fields = event_fields(event, decimal=decimal)
    assert all(isinstance(value, str) for value in fields.values())
    wire = {key.encode(): value.encode() for key, value in fields.items()}  # as Redis answers
    rebuilt = event_from_fields(wire)
    assert rebuilt == event and type(rebuilt) is type(event)
    assert [type(v) for v in vars_of(rebuilt)] == [type(v) for v in vars_of(event)]


def vars_of(value: Any) -> list[Any]:
    """Every leaf value inside an event, windows and extra included, in order."""
    if attrs.has(type(value)):
        return [leaf for f in attrs.fields(type(value)) for leaf in vars_of(getattr(value, f.name))]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in vars_of(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in vars_of(item)]
    return [value]


def test_numbers_are_exact_strings_in_the_entry() -> None:
    fields = event_fields(SAMPLES[0][0], decimal=True)
    assert fields["price"] == "80123.456789012345678901"
    assert fields["volume_24h"] == "1E+2"
    assert fields["numbers"] == "decimal" and fields["event_type"] == "CryptoLatestPrice"
    assert "market_cap" not in fields  # None is left out
    assert event_fields(SAMPLES[1][0], decimal=False)["price"] == repr(0.1 + 0.2)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"hello": "world"}, "no channel"),
        ({"channel": "x", "params": "{}", "ts": "1", "event_type": "Nope"}, "unknown event"),
        (
            {"channel": "onchain@kline", "params": "{}", "ts": "soon", "event_type": "Kline"},
            "unreadable",
        ),
    ],
)
def test_a_foreign_entry_is_refused_clearly(fields: dict[str, str], says: str) -> None:
    with pytest.raises(EntryError, match=says):
        event_from_fields(fields)


def test_stream_keys() -> None:
    assert stream_key("kline") == "cmcsync:onchain@kline"
    params = {"platform_id": 14, "address": "0xABC", "interval": "1m"}
    assert stream_key("onchain@kline", params, prefix="p") == (
        "p:onchain@kline:platform_id=14:interval=1m:address=0xabc"
    )
    assert stream_key("crypto_latest_price", {"crypto_ids": 1}) == (
        "cmcsync:market@crypto_latest_price:crypto_ids=1"
    )


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    settings = RedisSettings.from_env(
        {
            "CMCSYNC_REDIS_URL": "redis://:hunter2@cache:6380/2",
            "CMCSYNC_REDIS_CHANNELS": "kline,transaction",
            "CMCSYNC_REDIS_STREAMS": "subscription",
            "CMCSYNC_REDIS_PREFIX": "cmc",
            "CMCSYNC_REDIS_MAXLEN": "0",
            "CMCSYNC_REDIS_BUFFER_SIZE": "10",
            "CMCSYNC_REDIS_BATCH_SIZE": "5",
            "CMCSYNC_REDIS_CLOSE_TIMEOUT": "0.5",
        }
    )
    assert settings.url == "redis://:hunter2@cache:6380/2"
    assert settings.channels == ("onchain@kline", "onchain@transaction")
    assert (settings.streams, settings.prefix, settings.maxlen) == ("subscription", "cmc", 0)
    assert (settings.buffer_size, settings.batch_size, settings.close_timeout) == (10, 5, 0.5)
    defaults = RedisSettings.from_env({})
    assert (defaults.streams, defaults.maxlen) == ("channel", 100_000)
    assert defaults.channels == tuple(ALL_CHANNELS)


def test_host_settings_win_over_the_environment() -> None:
    flask_config = {"CMCSYNC_REDIS_URL": "redis://flask:6379/0", "CMCSYNC_REDIS_MAXLEN": 50}
    plugin = RedisPlugin.from_settings(flask_config, environ={"CMCSYNC_REDIS_PREFIX": "env"})
    assert (plugin.settings.url, plugin.settings.maxlen) == ("redis://flask:6379/0", 50)
    assert plugin.settings.prefix == "env"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CMCSYNC_REDIS_URL", "http://u:pw@cache", "not a Redis URL"),
        ("CMCSYNC_REDIS_STREAMS", "pool", "'channel'"),
        ("CMCSYNC_REDIS_CHANNELS", "candles", "unknown channel"),
        ("CMCSYNC_REDIS_MAXLEN", "-1", "at least 0"),
        ("CMCSYNC_REDIS_BUFFER_SIZE", "many", "whole number"),
        ("CMCSYNC_REDIS_PREFIX", "my prefix", "without spaces"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(cmcsync.ConfigError, match=says) as raised:
        RedisSettings.from_env({name: value})
    assert name in str(raised.value) and "pw@" not in str(raised.value)


def test_the_password_never_shows() -> None:
    plugin = RedisPlugin(url="redis://default:hunter2@127.0.0.1:1/0")
    consumer = Consumer("redis://:hunter2@127.0.0.1:1/0", channels=["kline"])
    shown = [repr(plugin), repr(plugin.settings), str(plugin.stats()), repr(consumer)]
    consumer.close()
    assert all("hunter2" not in text and "***" in text for text in shown)


# --- the installed plugin ------------------------------------------------------------------------


def test_the_module_is_a_plugin_that_stays_off_until_a_url_is_set(
    sim: Simulator, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmcsync_redis._Default, "plugin", None)
    monkeypatch.delenv("CMCSYNC_REDIS_URL", raising=False)
    [info] = plugin_info(make_plugin_manager(autoload=False, plugins=[cmcsync_redis]))
    assert "cmcsync_on_event" in info.hooks
    stream(sim, cmcsync_redis, per_channel=1)
    assert cmcsync_redis.default_plugin() is None
    keys = prefix()
    monkeypatch.setenv("CMCSYNC_REDIS_URL", redis_server.url)
    monkeypatch.setenv("CMCSYNC_REDIS_PREFIX", keys)
    monkeypatch.setenv("CMCSYNC_REDIS_CHANNELS", "crypto_latest_price")
    recorder = stream(sim, cmcsync_redis, per_channel=1)
    assert consume(redis_server.url, ["crypto_latest_price"], prefix=keys) == (
        recorder.by_channel("market@crypto_latest_price")
    )


def test_a_bad_environment_stops_the_client_at_start(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmcsync_redis._Default, "plugin", None)
    monkeypatch.setenv("CMCSYNC_REDIS_URL", "memcached://:hunter2@cache")
    client = cmcsync.Client(api_key="k", url=sim.url, autoload=False, plugins=[cmcsync_redis])
    with pytest.raises(cmcsync.ConfigError, match="CMCSYNC_REDIS_URL") as raised:
        client.start()
    assert "hunter2" not in str(raised.value)
    client.close()


def load_example(name: str) -> Any:
    """Import a script of the package's ``examples`` folder, which the docs show."""
    path = Path(__file__).resolve().parents[1] / "examples" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
