"""cmcsync-sql against the simulator, on SQLite files and on a real PostgreSQL server."""

from __future__ import annotations

import importlib.util
import itertools
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import cmcsync_sql
import pytest
import sqlalchemy as sa
from cmcsync_sql import SqlPlugin, SqlSettings, WriterError, read_events
from sqltesting import CHANNELS, FEED, KEY, PostgresServer, stream

import cmcsync
from cmcsync import Backoff
from cmcsync.channels import CHANNELS as ALL_CHANNELS
from cmcsync.channels import get_channel
from cmcsync.events import Event, Kline, Transaction
from cmcsync.plugins import make_plugin_manager, plugin_info
from cmcsync.testing import Simulator, wait_until


class _Client:
    """Stands in for the client in direct hook calls: what the plugin reads of it."""

    def __init__(self, decimal: bool = False) -> None:
        self.decimal = decimal


def expected(events: Sequence[Event]) -> list[Event]:
    """What a channel's table must hold: every event once, an interval at its last values."""
    row = get_channel(events[0].channel) if events else None
    if row is None or row.intervals is None:
        return list(events)
    latest: dict[tuple[Any, ...], Event] = {}
    for event in events:
        key = (tuple(sorted(event.params.items())), event.open_ts)
        latest[key] = event  # a later copy replaces the earlier one, in its place
    return list(latest.values())


def assert_stored(plugin: SqlPlugin, reference: Sequence[Event]) -> dict[str, int]:
    """Every channel's table holds exactly what the client delivered: same count, same
    values and types, no duplicates. Returns the count per channel."""
    counts = {}
    for channel in CHANNELS:
        delivered = [event for event in reference if event.channel == channel]
        stored = plugin.read_events(channel)
        assert stored == expected(delivered), channel
        assert len(stored) == len(set(map(repr, stored))), f"{channel}: duplicates"
        counts[channel] = len(stored)
    stats = plugin.stats()
    assert stats["accepted"] == len(reference)
    assert stats["dropped"] == stats["rejected"] == stats["unwritten"] == 0
    assert stats["buffered"] == stats["in_flight"] == 0
    assert stats["state"] == "stopped"  # the client's close joined the writer
    return counts


# --- the judged test: the feed, stored, equals what the client received ----------------------


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_sqlite_holds_exactly_what_the_client_received(
    sim: Simulator, tmp_path: Path, decimal: bool
) -> None:
    plugin = SqlPlugin(url=f"sqlite:///{tmp_path}/feed.db")
    recorder = stream(sim, plugin, decimal=decimal)
    counts = assert_stored(plugin, recorder.events)
    assert all(counts[channel] >= 3 for channel in CHANNELS)
    price = plugin.read_events("crypto_latest_price")[0]
    assert isinstance(price.price, Decimal if decimal else float)


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_postgresql_holds_exactly_what_the_client_received(
    sim: Simulator, postgres: PostgresServer, decimal: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    plugin = SqlPlugin(url=postgres.url, table_prefix=prefix)
    recorder = stream(sim, plugin, decimal=decimal)
    assert_stored(plugin, recorder.events)
    engine = sa.create_engine(postgres.url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(f"{prefix}kline")}
    finally:
        engine.dispose()
    assert type(columns["close"]).__name__ == ("NUMERIC" if decimal else "DOUBLE_PRECISION")
    assert type(columns["open_ts"]).__name__ == "BIGINT"


def test_postgresql_down_mid_stream_loses_nothing(sim: Simulator, make_postgres: Any) -> None:
    server: PostgresServer = make_postgres()
    plugin = SqlPlugin(url=server.url, backoff=Backoff(base=0.05, cap=0.2))

    def outage(client: cmcsync.Client, recorder: Any) -> None:
        server.stop("fast")
        stopped_at = len(recorder.events)
        recorder.wait_for(
            lambda: plugin.stats()["failures"] > 0 and len(recorder.events) > stopped_at + 50,
            timeout=10,
        )
        server.start()
        recorder.wait_for(lambda: plugin.stats()["failures"] == 0, timeout=10)

    recorder = stream(sim, plugin, during=outage)
    assert_stored(plugin, recorder.events)
    stats = plugin.stats()
    assert stats["outages"] >= 1 and stats["failed_attempts"] >= 1
    reported = [
        call["error"]
        for call in recorder.hook_calls("cmcsync_on_plugin_error")
        if call["plugin_name"] == "SqlPlugin"
    ]
    assert [error.kind for error in reported] == ["unavailable"]
    assert server.url.split("@")[1] in str(reported[0])


# --- natural keys ------------------------------------------------------------------------------


def kline(ts: int, open_ts: int, close: float, address: str = "0xabc") -> Kline:
    params = {"platform_id": 14, "address": address, "interval": "1m"}
    return Kline(channel="onchain@kline", params=params, ts=ts, open_ts=open_ts, close=close)


def swap(tx: str, index: int | None, ts: int, address: str = "0xabc") -> Transaction:
    return Transaction(
        channel="onchain@transaction",
        params={"platform_id": 14, "address": address},
        ts=ts,
        tx_hash=tx,
        log_index=index,
        value_usd=12.5,
    )


def test_a_candle_pushed_again_is_updated_in_place(tmp_path: Path) -> None:
    plugin = SqlPlugin(url=f"sqlite:///{tmp_path}/k.db", channels=["kline"])
    client = _Client()
    for event in (kline(1, 60_000, 1.0), kline(2, 120_000, 2.0), kline(3, 60_000, 1.5)):
        plugin.cmcsync_on_event(event, client)
    plugin.cmcsync_on_event(kline(4, 120_000, 2.5, address="0xdef"), client)
    plugin.close()
    stored = plugin.read_events("kline")
    assert [(e.params["address"], e.open_ts, e.close, e.ts) for e in stored] == [
        ("0xabc", 60_000, 1.5, 3),
        ("0xabc", 120_000, 2.0, 2),
        ("0xdef", 120_000, 2.5, 4),
    ]


def test_a_swap_already_stored_is_not_stored_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    client = _Client()
    first = SqlPlugin(url=url, channels=["transaction"])
    for event in (swap("0x1", 4, 1), swap("0x1", 5, 2), swap("0x1", 4, 3, address="0xdef")):
        first.cmcsync_on_event(event, client)
    first.close()
    # A second process, beyond the client's dedupe window, meets the same swaps again.
    second = SqlPlugin(url=url, channels=["transaction"])
    second.cmcsync_on_event(swap("0x1", 5, 9), client)
    second.cmcsync_on_event(swap("0x2", None, 10), client)  # no index: nothing identifies it
    second.cmcsync_on_event(swap("0x2", None, 11), client)
    second.close()
    stored = read_events(url, "onchain@transaction")
    assert [(e.tx_hash, e.log_index, e.ts) for e in stored] == [
        ("0x1", 4, 1),
        ("0x1", 5, 2),
        ("0x2", None, 10),
        ("0x2", None, 11),
    ]


def test_only_the_configured_channels_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    plugin = SqlPlugin(url=url, channels="kline")
    client = _Client()
    plugin.cmcsync_on_event(kline(1, 60_000, 1.0), client)
    plugin.cmcsync_on_event(swap("0x1", 1, 1), client)
    plugin.close()
    assert plugin.stats()["accepted"] == 1
    assert len(read_events(url, "kline")) == 1
    assert read_events(url, "transaction") == []
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {"cmcsync_kline", "cmcsync_tables", "cmcsync_writers"}


# --- refused data and reports ---------------------------------------------------------------


def test_a_value_the_database_refuses_costs_that_event_only(
    postgres: PostgresServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    plugin = SqlPlugin(url=postgres.url, table_prefix=prefix, channels=["transaction"])
    client = _Client()
    events = [swap(f"0x{n}", n, n) for n in range(5)]
    # A block height beyond BIGINT: the codec accepts integers up to 10**24.
    bad = Transaction(
        channel="onchain@transaction",
        params={"platform_id": 14, "address": "0xabc"},
        ts=99,
        tx_hash="0xbad",
        log_index=1,
        block_height=10**20,
    )
    for event in (*events[:2], bad, *events[2:]):
        plugin.cmcsync_on_event(event, client)
    with pytest.raises(WriterError) as raised:
        plugin.cmcsync_on_close(client)
    assert raised.value.kind == "rejected" and raised.value.count == 1
    assert plugin.read_events("transaction") == events
    stats = plugin.stats()
    assert (stats["written"], stats["rejected"]) == (5, 1)


def test_problems_are_raised_from_the_next_hook_call_never_twice_in_a_row(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's directory should be")
    plugin = SqlPlugin(
        url=f"sqlite:///{blocker}/x.db",
        backoff=Backoff(base=0.01, cap=0.02),
        buffer_size=2,
        close_timeout=0.2,
    )
    client = _Client()

    def call(ts: int) -> WriterError | None:
        try:
            plugin.cmcsync_on_event(kline(ts, 60_000, 1.0), client)
        except WriterError as exc:
            return exc
        return None

    try:
        outcomes = [call(1)]
        wait_until(lambda: plugin.stats()["failed_attempts"] > 0)
        outcomes += [call(ts) for ts in range(2, 10)]  # the buffer of 2 overflows
        raised = [outcome for outcome in outcomes if outcome is not None]
        assert [error.kind for error in raised] == ["unavailable", "overflow"]
        assert "not-a-directory" in str(raised[0])
        # A report waits for the call after one that raised, so a streak of failures
        # never builds up and the client never switches the plugin off.
        assert not any(a and b for a, b in itertools.pairwise(outcomes))
        with pytest.raises(WriterError) as closing:
            plugin.cmcsync_on_close(client)
    finally:
        plugin.close(0.2)
    assert {report.kind for report in closing.value.reports} == {"unwritten", "dropped"}
    stats = plugin.stats()
    assert stats["accepted"] == 9 and stats["written"] == 0
    assert stats["dropped"] + stats["unwritten"] == 9
    assert stats["state"] == "stopped"


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    settings = SqlSettings.from_env(
        {
            "CMCSYNC_SQL_URL": "postgres://cmc:hunter2@db.internal/market",
            "CMCSYNC_SQL_CHANNELS": "kline, onchain@transaction",
            "CMCSYNC_SQL_BUFFER_SIZE": "500",
            "CMCSYNC_SQL_BATCH_SIZE": "50",
            "CMCSYNC_SQL_CLOSE_TIMEOUT": "1.5",
            "CMCSYNC_SQL_TABLE_PREFIX": "cmc_",
        }
    )
    assert settings.url == "postgresql+psycopg://cmc:hunter2@db.internal/market"
    assert settings.channels == ("onchain@kline", "onchain@transaction")
    assert (settings.buffer_size, settings.batch_size) == (500, 50)
    assert (settings.close_timeout, settings.table_prefix) == (1.5, "cmc_")
    assert SqlSettings.from_env({}).url == cmcsync_sql.DEFAULT_URL
    assert SqlSettings.from_env({}).channels == tuple(ALL_CHANNELS)


def test_host_settings_win_over_the_environment() -> None:
    class DjangoSettings:
        CMCSYNC_SQL_URL = "sqlite:///django.db"
        CMCSYNC_SQL_CHANNELS = ("crypto_latest_price",)
        CMCSYNC_SQL_BATCH_SIZE = 10

    environ = {"CMCSYNC_SQL_URL": "sqlite:///env.db", "CMCSYNC_SQL_BUFFER_SIZE": "7"}
    plugin = SqlPlugin.from_settings(DjangoSettings(), environ=environ)
    assert plugin.settings.url == "sqlite:///django.db"
    assert plugin.settings.channels == ("market@crypto_latest_price",)
    assert (plugin.settings.batch_size, plugin.settings.buffer_size) == (10, 7)
    flask_config = {"CMCSYNC_SQL_URL": "sqlite:///flask.db", "CMCSYNC_SQL_BUFFER_SIZE": 3}
    assert SqlSettings.from_settings(flask_config, environ={}).buffer_size == 3
    django_cmcsync_dict = {"URL": "wss://cmc", "SQL_URL": "sqlite:///dict.db"}
    assert SqlSettings.from_settings(django_cmcsync_dict, environ={}).url == "sqlite:///dict.db"


def test_a_plugin_made_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMCSYNC_SQL_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("CMCSYNC_SQL_BATCH_SIZE", "9")
    assert (SqlPlugin().settings.url, SqlPlugin().settings.batch_size) == (
        "sqlite:///from-env.db",
        9,
    )
    assert SqlPlugin(batch_size=3).settings.url == "sqlite:///from-env.db"
    assert SqlPlugin(SqlSettings()).settings.url == cmcsync_sql.DEFAULT_URL


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CMCSYNC_SQL_URL", "mysql://u:p@h/db", "SQLite and PostgreSQL"),
        ("CMCSYNC_SQL_URL", "just-a-file.db", "not a database URL"),
        ("CMCSYNC_SQL_CHANNELS", "kline,candles", "unknown channel 'candles'"),
        ("CMCSYNC_SQL_BUFFER_SIZE", "lots", "whole number"),
        ("CMCSYNC_SQL_BATCH_SIZE", "0", "at least 1"),
        ("CMCSYNC_SQL_CLOSE_TIMEOUT", "-1", "above 0"),
        ("CMCSYNC_SQL_TABLE_PREFIX", "drop table;", "letters, digits"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(cmcsync.ConfigError, match=says) as raised:
        SqlSettings.from_env({name: value})
    assert name in str(raised.value)
    assert "p@h" not in str(raised.value)


def test_the_password_never_shows(tmp_path: Path) -> None:
    plugin = SqlPlugin(url="postgresql://cmc:hunter2@127.0.0.1:1/market")
    shown = [repr(plugin), repr(plugin.settings), str(plugin.stats())]
    assert all("hunter2" not in text and "***" in text for text in shown)


# --- the installed plugin ------------------------------------------------------------------------


def test_the_module_is_a_plugin_that_stays_off_until_a_url_is_set(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmcsync_sql._Default, "plugin", None)
    monkeypatch.delenv("CMCSYNC_SQL_URL", raising=False)
    pm = make_plugin_manager(autoload=False, plugins=[cmcsync_sql])
    [info] = plugin_info(pm)
    assert "cmcsync_on_event" in info.hooks
    # Off: streaming through it creates nothing.
    stream(sim, cmcsync_sql, per_channel=1)
    assert cmcsync_sql.default_plugin() is None
    # On: the environment says where.
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("CMCSYNC_SQL_URL", url)
    monkeypatch.setenv("CMCSYNC_SQL_CHANNELS", "crypto_latest_price")
    recorder = stream(sim, cmcsync_sql, per_channel=1)
    assert read_events(url, "crypto_latest_price") == recorder.by_channel(
        "market@crypto_latest_price"
    )


def test_a_bad_environment_stops_the_client_at_start(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cmcsync_sql._Default, "plugin", None)
    monkeypatch.setenv("CMCSYNC_SQL_URL", "oracle://scott:tiger@db/orcl")
    client = cmcsync.Client(api_key="k", url=sim.url, autoload=False, plugins=[cmcsync_sql])
    with pytest.raises(cmcsync.ConfigError, match="CMCSYNC_SQL_URL") as raised:
        client.start()
    assert "tiger" not in str(raised.value)
    client.close()


def test_the_example_in_the_docs_runs(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example("store_prices.py")
    url = f"sqlite:///{tmp_path}/prices.db"
    written = example.main(sim.url, url, api_key=KEY, count=10)
    assert written >= 10
    assert len(read_events(url, "crypto_latest_price")) == written
    assert f"written {written}, lost 0" in capsys.readouterr().out


def test_feed_covers_every_channel() -> None:
    assert sorted(channel for channel, _ in FEED) == sorted(ALL_CHANNELS)


def load_example(name: str) -> Any:
    """Import a script of the package's ``examples`` folder, which the docs show."""
    path = Path(__file__).resolve().parents[1] / "examples" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
