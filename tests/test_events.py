"""The event classes: frozen, slotted, documented with their wire keys, one per channel."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import attrs
import pytest

from cmcsync import events
from cmcsync.channels import CHANNELS

ALL_CLASSES = sorted(
    (getattr(events, name) for name in events.__all__ if isinstance(getattr(events, name), type)),
    key=lambda cls: cls.__name__,
)
EVENT_CLASSES = [cls for cls in ALL_CLASSES if issubclass(cls, events.Event)]


def minimal(cls: type) -> object:
    """An instance with only the mandatory fields set."""
    if not issubclass(cls, events.Event):
        return cls()
    if cls is events.CryptoLatestPrice:
        return cls(channel="c", params={}, ts=0, crypto_id=1, price=2.0)
    return cls(channel="c", params={}, ts=0)


def test_every_channel_row_names_a_class_of_this_module() -> None:
    for row in CHANNELS.values():
        assert getattr(events, row.event_type.__name__) is row.event_type
        assert row.event_type in EVENT_CLASSES


def test_dedupe_attributes_exist_on_their_classes() -> None:
    for row in CHANNELS.values():
        if row.dedupe_key is None:
            continue
        names = {field.name for field in attrs.fields(row.event_type)}
        assert set(row.dedupe_key) <= names
    assert events.wire_map(events.Transaction)["tx_hash"] == "tx"
    assert events.wire_map(events.Transaction)["log_index"] == "lgid"
    assert events.wire_map(events.LiquidityEvent)["instruction_index"] == "iix"


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_instances_are_frozen_and_slotted(cls: type) -> None:
    instance = minimal(cls)
    assert not hasattr(instance, "__dict__")
    first = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(instance, first, 5)
    with pytest.raises(AttributeError):
        instance.not_a_field = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_arguments_are_keyword_only(cls: type) -> None:
    with pytest.raises(TypeError):
        cls("c", {}, 0)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_docstrings_list_every_wire_key(cls: type) -> None:
    doc = cls.__doc__ or ""
    for name, wire in events.wire_map(cls).items():
        assert re.search(rf":ivar {name}: ``{re.escape(wire)}`` — \S", doc), (cls, name)


def test_wire_map_is_attribute_to_wire_key() -> None:
    assert events.wire_map(events.CryptoLatestPrice) == {
        "crypto_id": "cid",
        "price": "p",
        "volume_24h": "vu",
        "market_cap": "mc",
        "circulating_supply": "cs",
        "percent_change_24h": "p24h",
        "percent_change_7d": "p7d",
        "percent_change_30d": "p30d",
        "percent_change_60d": "p60d",
        "percent_change_3m": "p3m",
        "percent_change_1y": "p1y",
        "percent_change_ytd": "pytd",
        "percent_change_all": "pall",
        "fdv_percent_change_24h": "fdv24h",
    }
    assert events.wire_map(events.Kline) == {
        "open": "o",
        "high": "h",
        "low": "l",
        "close": "c",
        "volume_usd": "vu",
        "open_ts": "ot",
    }
    assert events.wire_map(events.TokenMetric)["windows"] == "sts"
    assert "windows" not in events.wire_map(events.PoolMetric)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_wire_keys_are_unique_within_a_class(cls: type) -> None:
    keys = list(events.wire_map(cls).values())
    assert len(keys) == len(set(keys))


def test_payload_attributes_default_to_none_except_required_ones() -> None:
    price = minimal(events.CryptoLatestPrice)
    assert isinstance(price, events.CryptoLatestPrice)
    assert price.market_cap is None
    assert price.extra == {}
    with pytest.raises(TypeError, match="price"):
        events.CryptoLatestPrice(channel="c", params={}, ts=0, crypto_id=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("base", [events.HoldersMetrics, events.HolderWalletUpdate])
def test_holder_kinds_route_on_tp(base: type[events.Event]) -> None:
    assert base.route_key == "tp"
    subclasses = base.__subclasses__()
    values = [sub.route_value for sub in subclasses]
    assert None not in values
    assert len(values) == len(set(values))
    if base is events.HoldersMetrics:
        assert set(values) == {
            "tag_distribution",
            "top_share",
            "holder_count",
            "tag_pnl",
            "tag_balance",
        }
    else:
        assert set(values) == {
            "token_balance",
            "native_balance",
            "pnl_stats",
            "last_active",
            "position_time",
        }


def test_to_datetime_is_exact_and_utc() -> None:
    moment = events.to_datetime(1778663880111)
    assert moment == dt.datetime(2026, 5, 13, 9, 18, 0, 111000, tzinfo=dt.timezone.utc)
    assert moment.utcoffset() == dt.timedelta(0)
    assert events.to_datetime(None) is None
    assert events.to_datetime(-1) == dt.datetime(
        1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc
    )


def test_time_helpers() -> None:
    event = events.Transaction(channel="c", params={}, ts=1778663880111, event_ts=1778659192000)
    assert event.time == events.to_datetime(1778663880111)
    assert event.event_time == dt.datetime(2026, 5, 13, 7, 59, 52, tzinfo=dt.timezone.utc)
    assert events.Transaction(channel="c", params={}, ts=0).event_time is None
    kline = events.Kline(channel="c", params={}, ts=0, open_ts=60_000)
    assert kline.open_time == dt.datetime(1970, 1, 1, 0, 1, tzinfo=dt.timezone.utc)


def test_events_compare_by_value() -> None:
    one = events.Kline(channel="c", params={"a": 1}, ts=1, open=Decimal("1.5"))
    two = events.Kline(channel="c", params={"a": 1}, ts=1, open=Decimal("1.5"))
    assert one == two
    assert one != attrs.evolve(two, close=2.0)


def test_token_metric_stats_keep_wire_order() -> None:
    day = events.TokenMetricWindow(window="24h", txs=3)
    hour = events.TokenMetricWindow(window="1h", txs=1)
    metric = events.TokenMetric(channel="c", params={}, ts=0, windows={"24h": day, "1h": hour})
    assert metric.stats == (day, hour)
