"""The simulator's generated data: wire keys per channel, levels, cadences, determinism."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from cmcsync.testing import Simulator
from cmcsync.testing._feeds import Feeds, Source
from cmcsync.testing._simprotocol import sub_key

KEY = "test-key"
PRICE = "market@crypto_latest_price"
BSC = 14
SOL = 16
BSC_USDC = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
WBNB = "0xbb4cdb9cbd36b01bd1cbaef60af814a3f6f0ee1c"
SOL_TOKEN = "GYQQfZTnTokenMintAddress"
POOL = "DJpdHs4wbm1XqRruM1NPHnSfpnSztUEeFW3bcaDEeg7H"
WALLET = "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN"
TX_KEYS = {
    "pid",
    "f",
    "bh",
    "tp",
    "pa",
    "t0a",
    "t1a",
    "t0s",
    "t1s",
    "vu",
    "q",
    "t0pu",
    "t1pu",
    "tx",
    "ts",
    "ma",
    "ba",
    "a0",
    "a1",
    "qi",
    "tii",
    "lgid",
    "iix",
    "ex",
    "txtp",
}
WINDOW_KEYS = {"bvn", "bvu", "svn", "svu", "ut", "but", "sut"}
STS_KEYS = WINDOW_KEYS | {"win", "vn", "vu", "pc", "txs", "bc", "sc", "h", "l"}

# channel -> (subscribe params, keys the docs list for ``data``, keys that are never absent).
CHANNELS: dict[str, tuple[dict[str, Any], set[str], set[str]]] = {
    "market@crypto_latest_price": (
        {"crypto_ids": [1]},
        {
            "cid",
            "p",
            "vu",
            "mc",
            "cs",
            "p24h",
            "p7d",
            "p30d",
            "p60d",
            "p3m",
            "p1y",
            "pytd",
            "pall",
            "fdv24h",
        },
        {"cid", "p"},
    ),
    "onchain@token_agg_event": (
        {"platform_id": BSC, "address": [BSC_USDC]},
        {"pid", "a", "ap", "p", "lu", "ts"},
        {"pid", "a", "ts"},
    ),
    "onchain@transaction": (
        {"platform_id": BSC, "address": [BSC_USDC]},
        TX_KEYS,
        {"pid", "tx", "ts", "tp", "t0a", "t1a"},
    ),
    "onchain@liquidity_event": (
        {"platform_id": SOL, "address": [SOL_TOKEN]},
        {
            "pid",
            "f",
            "ts",
            "tp",
            "t0s",
            "t1s",
            "t0a",
            "t1a",
            "a0",
            "a1",
            "vu",
            "ma",
            "tx",
            "lgid",
            "iix",
        },
        {"pid", "tx", "ts", "tp"},
    ),
    "onchain@kline": (
        {"platform_id": BSC, "address": [BSC_USDC], "interval": "1s"},
        {"o", "h", "l", "c", "vu", "ot"},
        {"o", "h", "l", "c", "ot"},
    ),
    "onchain@token_metric": (
        {"platform_id": BSC, "address": [BSC_USDC]},
        {"pid", "a", "p", "mc", "lu", "sts"},
        {"pid", "a", "sts"},
    ),
    "onchain@pool_metric": (
        {"platform_id": SOL, "pool_address": [POOL]},
        {"pid", "pa", "5m", "1h", "4h", "24h", "7d"},
        {"pid", "pa"},
    ),
    "onchain@unique_trader": (
        {"platform_id": BSC, "address": [BSC_USDC], "interval": "1s"},
        {"ut", "ot"},
        {"ut", "ot"},
    ),
    # Holder channels: common keys here, the keys of each ``tp`` are checked below.
    "onchain@holders_metrics": (
        {"platform_id": BSC, "address": [BSC_USDC]},
        set(),
        {"pid", "a", "tp", "ts"},
    ),
    "onchain@holder_wallet_update": (
        {"platform_id": SOL, "wallet_address": [WALLET]},
        set(),
        {"pid", "wa", "tp", "ts"},
    ),
}


class FakeClock:
    """A market clock the test moves by hand."""

    speed = 1.0

    def __init__(self) -> None:
        self.now = 1_778_659_200_000

    def now_ms(self) -> int:
        return self.now

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds


def feeds(seed: int = 1) -> Feeds:
    made = Feeds(seed=seed)
    made.clock = FakeClock()  # type: ignore[assignment]
    return made


def ticks(
    made: Feeds, channel: str, params: dict[str, Any], count: int
) -> Iterator[dict[str, Any]]:
    """The payloads pushed on one subscription over ``count`` ticks of its sources."""
    key = sub_key(channel, params)
    for _ in range(count):
        for source in made.sources(channel, params):
            made.clock.now += int(made.delay(source) * 1000) + 1  # type: ignore[attr-defined]
            for target, data in made.tick(source):
                if target == key:
                    yield data


def scalar(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] if isinstance(v, list) else v for k, v in params.items()}


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_each_channel_pushes_its_documented_envelope_and_keys(channel: str) -> None:
    params, documented, required = CHANNELS[channel]
    with Simulator(speed=1000, seed=3) as sim:
        ws = websocket.create_connection(sim.url, header={"X-CMC_PRO_API_KEY": KEY}, timeout=5)
        try:
            ws.recv()  # welcome
            ws.send(
                json.dumps({"id": 1, "method": "subscribe", "channel": channel, "params": params})
            )
            assert json.loads(ws.recv())["type"] == "ack"
            push = json.loads(ws.recv())
        finally:
            ws.close()
    assert push.keys() == {"type", "channel", "params", "data", "ts"}
    assert (push["type"], push["channel"], push["params"]) == ("data", channel, scalar(params))
    assert abs(push["ts"] - time.time() * 1000) < 60_000
    assert required <= push["data"].keys()
    assert not documented or push["data"].keys() <= documented


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_required_keys_are_never_null_and_optional_ones_sometimes_are(channel: str) -> None:
    params, documented, required = CHANNELS[channel]
    payloads = list(ticks(feeds(), channel, scalar(params), 300))
    assert len(payloads) >= 300
    for data in payloads:
        assert all(data.get(key) is not None for key in required), data
        assert not documented or data.keys() <= documented
    if channel != "onchain@unique_trader":  # its two keys are both essential
        gaps = [
            d for d in payloads if any(v is None for v in d.values()) or not documented <= d.keys()
        ]
        assert gaps, "no payload ever had a null or missing key"


def test_price_levels_and_market_cap() -> None:
    made = feeds()
    for cid, low, high in [
        (1, 50_000, 120_000),
        (1027, 2_000, 4_500),
        (825, 0.98, 1.02),
        (3408, 0.98, 1.02),
    ]:
        for data in ticks(made, "market@crypto_latest_price", {"crypto_ids": cid}, 50):
            assert low < data["p"] < high
            if data.get("mc") is not None and data.get("cs") is not None:
                assert data["mc"] == pytest.approx(data["p"] * data["cs"])


def test_stablecoins_hold_their_peg_and_barely_change() -> None:
    made = feeds()
    for cid in (825, 3408):
        for data in ticks(made, "market@crypto_latest_price", {"crypto_ids": cid}, 2000):
            assert 0.995 < data["p"] < 1.005
            changes = [data.get(key) for key in ("p24h", "p7d", "p30d", "pall")]
            assert all(abs(change) <= 0.5 for change in changes if change is not None), data


def test_unknown_ids_get_a_level_from_the_id_alone() -> None:
    first = next(ticks(feeds(seed=1), "market@crypto_latest_price", {"crypto_ids": 999_999}, 1))
    other = next(ticks(feeds(seed=2), "market@crypto_latest_price", {"crypto_ids": 999_999}, 1))
    assert first["p"] == pytest.approx(other["p"], rel=0.05)


@pytest.mark.parametrize(("cid", "seconds"), [(1, 5.0), (4999, 5.0), (5426, 5.0), (30_000, 15.0)])
def test_price_cadence_is_5s_for_top_ids_15s_for_others_divided_by_speed(
    cid: int, seconds: float
) -> None:
    for speed in (1.0, 50.0):
        made = Feeds(seed=1, speed=speed)
        delay = made.delay(("price", cid))
        assert seconds * 0.94 / speed <= delay <= seconds * 1.06 / speed


def test_same_seed_same_data_other_seed_other_data() -> None:
    params = {"platform_id": BSC, "address": BSC_USDC}
    runs = [list(ticks(feeds(seed), "onchain@transaction", params, 20)) for seed in (4, 4, 5)]
    assert runs[0] == runs[1]
    assert [d["tx"] for d in runs[0]] != [d["tx"] for d in runs[2]]


def test_a_swap_is_the_same_event_on_both_tokens_of_its_pool() -> None:
    made = feeds()
    for pid, token in [(BSC, BSC_USDC), (SOL, SOL_TOKEN)]:
        source = made.sources("onchain@transaction", {"platform_id": pid, "address": token})[0]
        pushes = [
            (dict(key[1])["address"], data)
            for key, data in made.tick(source)
            if key[0] == "onchain@transaction"
        ]
        (first, swap), (second, again) = pushes
        assert {first, second} == {swap["t0a"], swap["t1a"]} and swap["t0a"] < swap["t1a"]
        assert again is swap
        if pid == SOL:
            assert "lgid" not in swap and isinstance(swap["iix"], int)
            assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{80,90}", swap["tx"])
        else:
            assert "iix" not in swap and isinstance(swap["lgid"], int)
            assert re.fullmatch(r"0x[0-9a-f]{64}", swap["tx"])


def test_swaps_are_mostly_included_and_quote_side_is_consistent() -> None:
    swaps = list(
        ticks(feeds(), "onchain@transaction", {"platform_id": BSC, "address": BSC_USDC}, 400)
    )
    excluded = [s for s in swaps if s["ex"]]
    assert 0 < len(excluded) < len(swaps) * 0.1
    assert all(s["txtp"] == 0 for s in swaps if not s["ex"])
    for swap in swaps:
        assert swap["tp"] in ("buy", "sell") and swap["qi"] in (0, 1)
        assert swap[("t0a", "t1a")[swap["qi"]]] in (
            WBNB,
            "0x55d398326f99059ff775485246999027b3197955",
        )


def test_both_tokens_subscribed_on_one_connection_see_the_same_tx() -> None:
    with Simulator(speed=1000, seed=8) as sim:
        ws = websocket.create_connection(sim.url, header={"X-CMC_PRO_API_KEY": KEY}, timeout=5)
        try:
            ws.recv()
            ws.send(
                json.dumps(
                    {
                        "method": "subscribe",
                        "channel": "onchain@transaction",
                        "params": {"platform_id": BSC, "address": [BSC_USDC, WBNB]},
                    }
                )
            )
            seen: dict[str, set[str]] = {}
            deadline = time.monotonic() + 5
            while not any(len(addresses) == 2 for addresses in seen.values()):
                assert time.monotonic() < deadline, "no swap reached both subscriptions"
                push = json.loads(ws.recv())
                if push["type"] == "data":
                    key = f"{push['data']['tx']}/{push['data']['lgid']}"
                    seen.setdefault(key, set()).add(push["params"]["address"])
        finally:
            ws.close()


def test_klines_close_on_aligned_intervals_and_chain() -> None:
    made = feeds()
    candles = list(
        ticks(
            made, "onchain@kline", {"platform_id": BSC, "address": BSC_USDC, "interval": "1m"}, 30
        )
    )
    opens = [c["ot"] for c in candles]
    assert all(ot % 60_000 == 0 for ot in opens)
    assert opens == list(range(opens[0], opens[0] + 60_000 * len(opens), 60_000))
    for before, after in itertools.pairwise(candles):
        assert after["o"] == before["c"]
    for candle in candles:
        assert (
            candle["l"]
            <= min(candle["o"], candle["c"])
            <= max(candle["o"], candle["c"])
            <= candle["h"]
        )


def test_unique_traders_close_per_interval() -> None:
    made = feeds()
    counts = list(
        ticks(
            made,
            "onchain@unique_trader",
            {"platform_id": BSC, "address": BSC_USDC, "interval": "5m"},
            20,
        )
    )
    assert all(isinstance(c["ut"], int) and c["ut"] >= 0 and c["ot"] % 300_000 == 0 for c in counts)


def test_token_metric_windows_are_partial_updates_in_order() -> None:
    pushes = list(
        ticks(feeds(), "onchain@token_metric", {"platform_id": BSC, "address": BSC_USDC}, 200)
    )
    order = ["1m", "5m", "1h", "4h", "24h"]
    kinds = set()
    for data in pushes:
        wins = [w["win"] for w in data["sts"]]
        assert wins == sorted(wins, key=order.index) and wins
        kinds.add(len(wins) == 5)
        assert all(w.keys() <= STS_KEYS for w in data["sts"])
    assert kinds == {True, False}
    assert any(d["mc"] is None for d in pushes) and any(d["lu"] is not None for d in pushes)


def test_pool_metric_windows() -> None:
    for data in ticks(
        feeds(), "onchain@pool_metric", {"platform_id": SOL, "pool_address": POOL}, 20
    ):
        assert {"5m", "1h", "4h", "24h"} <= data.keys()
        assert all(data[w].keys() <= WINDOW_KEYS for w in ("5m", "1h", "4h", "24h"))


@pytest.mark.parametrize(
    ("channel", "params", "documented"),
    [
        (
            "onchain@holders_metrics",
            {"platform_id": BSC, "address": BSC_USDC},
            {
                "tag_distribution": {"devp", "khc", "whc", "bdhc", "shc", "bhc", "smhc"},
                "top_share": {"t10p", "t50p", "t100p", "t100ab"},
            },
        ),
        (
            "onchain@holder_wallet_update",
            {"platform_id": SOL, "wallet_address": WALLET},
            {
                "token_balance": {"a", "b", "hp", "bh"},
                "last_active": {"lat"},
                "position_time": {"spot", "spct"},
            },
        ),
    ],
)
def test_holder_channels_cycle_through_every_tp(
    channel: str, params: dict[str, Any], documented: dict[str, set[str]]
) -> None:
    pushes = list(ticks(feeds(), channel, params, 50))
    assert len({d["tp"] for d in pushes[:5]}) == 5
    for data in pushes:
        keys = documented.get(data["tp"])
        if keys:
            assert data.keys() - {"pid", "a", "wa", "tp", "ts"} <= keys
        if data["tp"] == "top_share" and None not in (
            data.get("t10p"),
            data.get("t50p"),
            data.get("t100p"),
        ):
            assert data["t10p"] <= data["t50p"] <= data["t100p"] <= 100
        if (
            data["tp"] == "position_time"
            and data.get("spct") is not None
            and data.get("spot") is not None
        ):
            assert data["spot"] <= data["spct"]


def test_every_source_kind_is_reachable_from_a_channel() -> None:
    made = feeds()
    kinds: set[str] = set()
    for channel, (params, _, _) in CHANNELS.items():
        sources: list[Source] = made.sources(channel, scalar(params))
        kinds.update(source[0] for source in sources)
    assert kinds == {
        "price",
        "swaps",
        "liquidity",
        "kline",
        "unique_trader",
        "token_metric",
        "pool_metric",
        "holders",
        "wallet",
    }


def test_a_restarted_interval_source_does_not_catch_up_on_its_pause() -> None:
    made = feeds()
    params = {"platform_id": BSC, "address": BSC_USDC, "interval": "1m"}
    last = list(ticks(made, "onchain@kline", params, 3))[-1]
    (source,) = made.sources("onchain@kline", params)
    made.clock.now += 3_600_000  # type: ignore[attr-defined]
    made.restart(source)
    resumed = next(ticks(made, "onchain@kline", params, 1))
    assert resumed["ot"] >= last["ot"] + 3_600_000
    assert resumed["o"] == last["c"]


def _subscribed(sim: Simulator, ids: list[int]) -> websocket.WebSocket:
    ws = websocket.create_connection(sim.url, header={"X-CMC_PRO_API_KEY": KEY}, timeout=5)
    ws.recv()  # welcome
    ws.send(json.dumps({"method": "subscribe", "channel": PRICE, "params": {"crypto_ids": ids}}))
    assert json.loads(ws.recv())["type"] == "ack"
    return ws


def test_a_new_price_subscription_gets_a_first_push_at_once() -> None:
    with Simulator(speed=1, seed=2) as sim:  # the next regular push is ~5 s away
        ws = _subscribed(sim, [1])
        try:
            ws.settimeout(2)
            assert json.loads(ws.recv())["params"] == {"crypto_ids": 1}
        finally:
            ws.close()


def test_no_data_after_unsubscribe_and_none_without_feeds() -> None:
    with Simulator(speed=1000, seed=2) as sim:
        ws = _subscribed(sim, [1])
        try:
            ws.send(json.dumps({"method": "unsubscribe", "channel": PRICE}))
            while json.loads(ws.recv())["type"] != "ack":
                pass
            ws.send(
                json.dumps({"method": "subscribe", "channel": PRICE, "params": {"crypto_ids": 2}})
            )
            later = [json.loads(ws.recv()) for _ in range(6)]
        finally:
            ws.close()
    assert later[0]["type"] == "ack"
    assert {m["params"]["crypto_ids"] for m in later[1:]} == {2}
    with Simulator(feeds=False) as quiet:
        ws = _subscribed(quiet, [1])
        try:
            quiet.push_data(PRICE, {"crypto_ids": 1}, {"cid": 1, "p": 1.0}, ts=1)
            assert json.loads(ws.recv())["ts"] == 1  # the pushed frame is the first data
        finally:
            ws.close()
