"""End to end, every channel: what a plugin receives equals what the server put on the wire."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

import cmcsync
import cmcsync.events
from cmcsync import CHANNELS
from cmcsync.events import wire_map
from cmcsync.testing import EventRecorder, Simulator
from tests.conftest import KEY, make_client

BSC_TOKEN = "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"
WBNB = "0xbb4cdb9cbd36b01bd1cbaef60af814a3f6f0ee1c"
SOL_WALLET = "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN"

PARAMS: dict[str, dict[str, Any]] = {
    "market@crypto_latest_price": {"crypto_ids": [1, 1027]},
    "onchain@token_agg_event": {"platform_id": 14, "address": [BSC_TOKEN]},
    "onchain@transaction": {"platform_id": 14, "address": [BSC_TOKEN]},
    "onchain@liquidity_event": {"platform_id": 14, "address": [BSC_TOKEN]},
    "onchain@kline": {"platform_id": 14, "address": [BSC_TOKEN], "interval": "1s"},
    "onchain@token_metric": {"platform_id": 14, "address": [BSC_TOKEN]},
    "onchain@pool_metric": {
        "platform_id": 16,
        "pool_address": ["DJpdHs4wbm1XqRruM1NPHnSfpnSztUEeFW3bcaDEeg7H"],
    },
    "onchain@unique_trader": {"platform_id": 14, "address": [BSC_TOKEN], "interval": "1s"},
    "onchain@holders_metrics": {"platform_id": 14, "address": [BSC_TOKEN]},
    "onchain@holder_wallet_update": {"platform_id": 16, "wallet_address": [SOL_WALLET]},
}


def assert_same(obj: Any, data: Mapping[str, Any], where: str) -> None:
    """Every wire key of ``data`` is on ``obj``: typed under its name, or kept in ``extra``."""
    names = {wire: attr for attr, wire in wire_map(type(obj)).items()}
    windows = getattr(obj, "windows", None)
    for key, value in data.items():
        if key in names:
            got = getattr(obj, names[key])
            if isinstance(value, list) and windows is not None:  # token_metric sts
                for element in value:
                    assert_same(windows[element["win"]], element, f"{where}.sts[{element['win']}]")
            elif value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                assert got == value, f"{where}.{key}: {got!r} != {value!r}"
            else:
                assert got == value and type(got) in (int, float, Decimal), (where, key, got, value)
        elif isinstance(value, dict) and windows is not None and key in windows:
            assert_same(windows[key], value, f"{where}.{key}")
        else:
            assert obj.extra.get(key) == value, f"{where}: wire key {key!r} lost"


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_plugin_values_equal_the_wire(channel: str) -> None:
    with Simulator(api_keys=(KEY,), speed=500, seed=31) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder)
        try:
            client.subscribe(channel, **PARAMS[channel])
            recorder.wait_for_events(6, timeout=10, channel=channel)
            # Every push sent before the unsubscribe's ack has reached the client by then.
            client.unsubscribe_all()
        finally:
            client.close()
        sent = [m for m in sim.all_connections()[0].sent if m.get("type") == "data"]
    got = recorder.by_channel(channel)
    assert len(got) == len(sent), "every push reached the plugin, once"
    for event, frame in zip(got, sent, strict=True):
        assert event.channel == frame["channel"]
        assert dict(event.params) == frame["params"]
        assert event.ts == frame["ts"]
        assert_same(event, frame["data"], channel)


def test_a_swap_pushed_for_both_tokens_reaches_plugins_once() -> None:
    with Simulator(api_keys=(KEY,), speed=500, seed=32) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder)
        try:
            client.subscribe("onchain@transaction", platform_id=14, address=[BSC_TOKEN, WBNB])
            recorder.wait_for(lambda: client.stats()["duplicates_dropped"] >= 3, timeout=10)
            client.unsubscribe_all()
        finally:
            client.close()
        sent = [m for m in sim.all_connections()[0].sent if m.get("type") == "data"]
    keys_sent = [(m["data"]["tx"], m["data"].get("lgid")) for m in sent]
    keys_got = [(e.tx_hash, e.log_index) for e in recorder.events]
    assert len(keys_sent) > len(set(keys_sent)), "the server did push duplicates"
    assert sorted(keys_got) == sorted(set(keys_sent)), "each swap exactly once"
    assert client.stats()["duplicates_dropped"] == len(keys_sent) - len(set(keys_sent))


def test_decimal_mode_keeps_the_wire_digits(sim: Simulator) -> None:
    recorder = EventRecorder()
    raw: list[str | bytes] = []
    client = make_client(sim.url, recorder, decimal=True)
    try:
        client.tap_frames(lambda _, frame: raw.append(frame))
        client.subscribe("market@crypto_latest_price", crypto_ids=[1])
        recorder.wait_for_events(1, timeout=5)
    finally:
        client.close()
    event = recorder.events[0]
    assert isinstance(event, cmcsync.events.CryptoLatestPrice)
    assert isinstance(event.price, Decimal)
    text = next(f for f in raw if isinstance(f, str) and '"data"' in f)
    assert f'"p":{event.price}' in text.replace(" ", ""), "the Decimal has exactly the digits sent"
