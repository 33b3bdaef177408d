"""Decoding every documented push into typed events, the codec's tolerance of bad data, and
events back into JSON-safe dicts."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import sys
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmcsync import events
from cmcsync._codec import MAX_EXTRA_DEPTH, Codec, make_converter
from cmcsync.channels import CHANNELS, get_channel
from cmcsync.exceptions import DecodeError, ProtocolError
from cmcsync.testing import FEED_CHANNELS, Simulator, stream_feed

# --- the protocol document's example pushes, verbatim (§3.4-§3.13) --------------------------

LATEST_PRICE = """{ "type": "data", "channel": "market@crypto_latest_price",
  "params": { "crypto_ids": 1 },
  "data": { "cid": 1, "p": 81187.93284788371, "vu": 29932025976.79, "mc": 1626089237758.01,
            "cs": 20028706, "p24h": 0.534347439686, "p7d": -0.769630510488,
            "p30d": 14.825850522161, "p60d": 14.895817222241, "p3m": 20.814087592967,
            "p1y": -21.146722852984, "pytd": -8.280487978902, "pall": 131301167.42003132,
            "fdv24h": 0.534347439686 },
  "ts": 1778663880111 }"""

TOKEN_AGG = """{ "type": "data", "channel": "onchain@token_agg_event",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d" },
  "data": { "pid": 14, "a": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "ap": 0.9998026294970268, "p": 0.9997425990337028,
            "lu": 112769637.58815227, "ts": 1778659194000 },
  "ts": 1778663880111 }"""

TRANSACTION = """{ "type": "data", "channel": "onchain@transaction",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d" },
  "data": { "pid": 14, "f": "0xdb1d10011ad0ff90774d0c6bb92e5c5c8b4461f7", "bh": 98011237,
            "tp": "sell", "pa": "0x2f4a644cd20eb9f45fa166dbb87068697fe8e6e3",
            "t0a": "0x5feccd17c393caf1001d18164236a37e731fcb9d",
            "t1a": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "t0s": "USDC", "t1s": "WBNB", "vu": 167.11650988683866, "q": 0.2876839934391258,
            "t0pu": 0.28760994330122636, "t1pu": 0.9997425990337028,
            "tx": "0xade908a367c85915a89719ddce9e95a864bd2c9691bb28c6d6b86d907181f7aa",
            "ts": 1778659192000, "ma": "0x28e2ea090877bf75740558f6bfb36a5ffee9e9df",
            "ba": "0x55d398326f99059ff775485246999027b3197955",
            "a0": 8.581676894301156, "a1": 0.9999663716704877,
            "qi": 0, "tii": 0, "lgid": 59, "ex": false, "txtp": 0 },
  "ts": 1778663880111 }"""

LIQUIDITY = """{ "type": "data", "channel": "onchain@liquidity_event",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d" },
  "data": { "pid": 14, "f": "0x0bfbcf9fa4f9c56b0f40a671ad40e0805a091865", "ts": 1778659195000,
            "tp": "add", "t0s": "USDC", "t1s": "MAT",
            "t0a": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "t1a": "0xfe2dd2d57a05f89438f3aec94e",
            "a0": 0, "a1": 293.8158004758334, "vu": 49.84709760712249,
            "ma": "0x7cc5a95f6e688a917c899084b5cfd389de730fdf",
            "tx": "0xcf859eb0b1c563ea69255eb4ea8a134002948e7e7e9913f441896c518a4dfaeb",
            "lgid": 12 },
  "ts": 1778663880111 }"""

KLINE = """{ "type": "data", "channel": "onchain@kline",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
              "interval": "1m" },
  "data": { "o": 0.9995980459860556, "h": 0.999729701705, "l": 0.999529767125,
            "c": 0.999677480145, "vu": 3237.47055005272, "ot": 1778649420000 },
  "ts": 1778663880111 }"""

TOKEN_METRIC = """{ "type": "data", "channel": "onchain@token_metric",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d" },
  "data": { "pid": 14, "a": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "p": 0.9997425990337028, "mc": null, "lu": null,
            "sts": [ { "win": "4h", "vn": 6615525.086132893, "vu": 6613627.176252886,
                       "pc": -0.01, "txs": 28864, "bc": 12692, "sc": 16172,
                       "bvu": 3234904.850668452, "svu": 3378722.325584434,
                       "bvn": null, "svn": null, "ut": 6211, "but": 3695, "sut": 4142,
                       "h": 1.0003681078349795, "l": 0.9994 } ] },
  "ts": 1778663880111 }"""

POOL_METRIC = """{ "type": "data", "channel": "onchain@pool_metric",
  "params": { "platform_id": 16, "pool_address": "DJpdHs4wbm1XqRruM1NPHnSfpnSztUEeFW3bcaDEeg7H" },
  "data": { "pid": 16, "pa": "DJpdHs4wbm1XqRruM1NPHnSfpnSztUEeFW3bcaDEeg7H",
            "5m":  { "bvn": 0, "bvu": 0, "svn": 0, "svu": 0, "ut": 11, "but": 2, "sut": 10 },
            "1h":  { "bvn": 123.45, "bvu": 500, "svn": 87.65, "svu": 400, "ut": 53, "but": 21,
                     "sut": 38 },
            "4h":  { "bvn": 1234.56, "bvu": 5000, "svn": 987.65, "svu": 4000, "ut": 200,
                     "but": 80, "sut": 120 },
            "24h": { "bvn": 12345.67, "bvu": 50000, "svn": 9876.54, "svu": 40000, "ut": 1000,
                     "but": 400, "sut": 600 } },
  "ts": 1778663880111 }"""

UNIQUE_TRADER = """{ "type": "data", "channel": "onchain@unique_trader",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
              "interval": "1m" },
  "data": { "ut": 6, "ot": 1778659140000 },
  "ts": 1778663880111 }"""

HOLDERS_TAGS = """{ "type": "data", "channel": "onchain@holders_metrics",
  "params": { "platform_id": 14, "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d" },
  "data": { "pid": 14, "a": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "tp": "tag_distribution", "ts": 1778659184000, "devp": 12, "khc": 221,
            "whc": 2518, "bdhc": 3897, "shc": 102, "bhc": 45, "smhc": 2 },
  "ts": 1778663880111 }"""

WALLET_BALANCE = """{ "type": "data", "channel": "onchain@holder_wallet_update",
  "params": { "platform_id": 16,
              "wallet_address": "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN" },
  "data": { "pid": 16, "wa": "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN",
            "tp": "token_balance", "a": "GYQQfZTnTokenMintAddress", "b": 37151378.807477,
            "hp": 3.715, "bh": 416995858, "ts": 1778659191803 },
  "ts": 1778663880111 }"""

# Frames captured from the live server by third parties (§3.5, §3.9, §3.12).
CAPTURED_AGG_WITHOUT_P = (
    '{"pid":14,"a":"0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82","ap":1.4114,'
    '"ts":1781554539000,"lu":12141216.56}'
)
CAPTURED_TOP_SHARE = (
    '{"pid":14,"a":"0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82","tp":"top_share",'
    '"ts":1781550268455,"t10p":3.9934,"t50p":5.3503,"t100p":5.6799,"t100ab":2589719.48}'
)
CAPTURED_METRIC_TWO_WINDOWS = (
    '{"pid":14,"a":"0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82","p":1.4114,"mc":null,'
    '"lu":12141216.56,"sts":[{"win":"4h","vn":1000.5,"vu":1412.1,"pc":0.2,"txs":40,"bc":22,'
    '"sc":18,"bvu":800.1,"svu":612.0,"bvn":566.9,"svn":433.6,"ut":17,"but":9,"sut":8,'
    '"h":1.42,"l":1.40},{"win":"24h","vu":9981.2,"pc":-1.5,"txs":311,"bc":150,"sc":161,'
    '"bvu":5000.2,"svu":4981.0,"ut":88}]}'
)
CAPTURED_LIQUIDITY_WITHOUT_LGID = (
    '{"pid":14,"f":"0x0bfbcf9fa4f9c56b0f40a671ad40e0805a091865","ts":1781554000000,'
    '"tp":"remove","t0s":"CAKE","t1s":"WBNB","t0a":"0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82",'
    '"t1a":"0xbb4cdb9cbd36b01bd1cbaebf2de08d9173bc095c","a0":12.5,"a1":0.03,"vu":17.7,'
    '"ma":"0x7cc5a95f6e688a917c899084b5cfd389de730fdf",'
    '"tx":"0x1111111111111111111111111111111111111111111111111111111111111111"}'
)

EXAMPLES = {
    "crypto_latest_price": LATEST_PRICE,
    "token_agg_event": TOKEN_AGG,
    "transaction": TRANSACTION,
    "liquidity_event": LIQUIDITY,
    "kline": KLINE,
    "token_metric": TOKEN_METRIC,
    "pool_metric": POOL_METRIC,
    "unique_trader": UNIQUE_TRADER,
    "holders_metrics": HOLDERS_TAGS,
    "holder_wallet_update": WALLET_BALANCE,
}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.fixture(scope="module")
def dcodec() -> Codec:
    return Codec(decimal=True)


def push(codec: Codec, text: str, *, exact: bool = False) -> Any:
    """Decode a whole envelope as the client does: JSON text in, event out."""
    frame = json.loads(text, parse_float=Decimal) if exact else json.loads(text)
    return codec.decode(get_channel(frame["channel"]), frame["params"], frame["data"], frame["ts"])


def payload(codec: Codec, short: str, data: Any, ts: int = 1778663880111) -> Any:
    return codec.decode(get_channel(short), {"platform_id": 14}, data, ts)


# --- the documented examples -----------------------------------------------------------------


def test_latest_price_example(codec: Codec) -> None:
    event = push(codec, LATEST_PRICE)
    assert type(event) is events.CryptoLatestPrice
    assert event.channel == "market@crypto_latest_price"
    assert event.params == {"crypto_ids": 1}
    assert event.ts == 1778663880111
    assert event.time.isoformat() == "2026-05-13T09:18:00.111000+00:00"
    assert event.crypto_id == 1
    assert event.price == 81187.93284788371
    assert event.volume_24h == 29932025976.79
    assert event.market_cap == 1626089237758.01
    assert event.circulating_supply == 20028706.0
    assert type(event.circulating_supply) is float
    assert event.percent_change_24h == 0.534347439686
    assert event.percent_change_7d == -0.769630510488
    assert event.percent_change_30d == 14.825850522161
    assert event.percent_change_60d == 14.895817222241
    assert event.percent_change_3m == 20.814087592967
    assert event.percent_change_1y == -21.146722852984
    assert event.percent_change_ytd == -8.280487978902
    assert event.percent_change_all == 131301167.42003132
    assert event.fdv_percent_change_24h == 0.534347439686
    assert event.extra == {}


def test_token_agg_event_example(codec: Codec) -> None:
    event = push(codec, TOKEN_AGG)
    assert type(event) is events.TokenAggEvent
    assert event.platform_id == 14
    assert event.address == "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
    assert event.aggregate_price == 0.9998026294970268
    assert event.price == 0.9997425990337028
    assert event.liquidity == 112769637.58815227
    assert event.event_ts == 1778659194000
    assert event.event_time is not None
    assert event.event_time.isoformat() == "2026-05-13T07:59:54+00:00"


def test_transaction_example(codec: Codec) -> None:
    event = push(codec, TRANSACTION)
    assert type(event) is events.Transaction
    assert event.platform_id == 14
    assert event.factory_address == "0xdb1d10011ad0ff90774d0c6bb92e5c5c8b4461f7"
    assert event.block_height == 98011237
    assert event.side == "sell"
    assert event.pool_address == "0x2f4a644cd20eb9f45fa166dbb87068697fe8e6e3"
    assert event.token0_address == "0x5feccd17c393caf1001d18164236a37e731fcb9d"
    assert event.token1_address == "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
    assert (event.token0_symbol, event.token1_symbol) == ("USDC", "WBNB")
    assert event.value_usd == 167.11650988683866
    assert event.quote_price == 0.2876839934391258
    assert event.token0_price_usd == 0.28760994330122636
    assert event.token1_price_usd == 0.9997425990337028
    assert event.token0_amount == 8.581676894301156
    assert event.token1_amount == 0.9999663716704877
    assert event.tx_hash == "0xade908a367c85915a89719ddce9e95a864bd2c9691bb28c6d6b86d907181f7aa"
    assert event.event_ts == 1778659192000
    assert event.maker_address == "0x28e2ea090877bf75740558f6bfb36a5ffee9e9df"
    assert event.base_address == "0x55d398326f99059ff775485246999027b3197955"
    assert (event.quote_index, event.token_in_index) == (0, 0)
    assert event.log_index == 59
    assert event.instruction_index is None
    assert event.excluded is False
    assert event.exclusion_reason == 0
    assert event.extra == {}


def test_liquidity_event_example(codec: Codec) -> None:
    event = push(codec, LIQUIDITY)
    assert type(event) is events.LiquidityEvent
    assert event.kind == "add"
    assert event.factory_address == "0x0bfbcf9fa4f9c56b0f40a671ad40e0805a091865"
    assert event.event_ts == 1778659195000
    assert (event.token0_symbol, event.token1_symbol) == ("USDC", "MAT")
    assert event.token1_address == "0xfe2dd2d57a05f89438f3aec94e"
    assert event.token0_amount == 0.0
    assert event.token1_amount == 293.8158004758334
    assert event.value_usd == 49.84709760712249
    assert event.maker_address == "0x7cc5a95f6e688a917c899084b5cfd389de730fdf"
    assert event.tx_hash == "0xcf859eb0b1c563ea69255eb4ea8a134002948e7e7e9913f441896c518a4dfaeb"
    assert event.log_index == 12


def test_kline_example(codec: Codec) -> None:
    event = push(codec, KLINE)
    assert type(event) is events.Kline
    assert event.params["interval"] == "1m"
    assert event.open == 0.9995980459860556
    assert event.high == 0.999729701705
    assert event.low == 0.999529767125
    assert event.close == 0.999677480145
    assert event.volume_usd == 3237.47055005272
    assert event.open_ts == 1778649420000
    assert event.open_time is not None
    assert event.open_time.isoformat() == "2026-05-13T05:17:00+00:00"


def test_token_metric_example(codec: Codec) -> None:
    event = push(codec, TOKEN_METRIC)
    assert type(event) is events.TokenMetric
    assert event.price == 0.9997425990337028
    assert event.market_cap is None
    assert event.liquidity is None
    assert list(event.windows) == ["4h"]
    window = event.windows["4h"]
    assert event.stats == (window,)
    assert window.window == "4h"
    assert window.volume_token == 6615525.086132893
    assert window.volume_usd == 6613627.176252886
    assert window.percent_change == -0.01
    assert window.txs == 28864
    assert (window.buys, window.sells) == (12692, 16172)
    assert window.buy_volume_usd == 3234904.850668452
    assert window.sell_volume_usd == 3378722.325584434
    assert window.buy_volume_token is None
    assert window.sell_volume_token is None
    assert (window.unique_traders, window.unique_buyers, window.unique_sellers) == (
        6211,
        3695,
        4142,
    )
    assert window.high == 1.0003681078349795
    assert window.low == 0.9994
    assert event.extra == {}


def test_pool_metric_example(codec: Codec) -> None:
    event = push(codec, POOL_METRIC)
    assert type(event) is events.PoolMetric
    assert event.platform_id == 16
    assert event.pool_address == "DJpdHs4wbm1XqRruM1NPHnSfpnSztUEeFW3bcaDEeg7H"
    assert list(event.windows) == ["5m", "1h", "4h", "24h"]
    assert event.windows["5m"].unique_traders == 11
    assert event.windows["5m"].buy_volume_usd == 0.0
    hour = event.windows["1h"]
    assert hour.buy_volume_token == 123.45
    assert hour.buy_volume_usd == 500.0
    assert hour.sell_volume_token == 87.65
    assert hour.sell_volume_usd == 400.0
    assert (hour.unique_traders, hour.unique_buyers, hour.unique_sellers) == (53, 21, 38)
    assert event.windows["24h"].sell_volume_token == 9876.54
    assert event.extra == {}


def test_unique_trader_example(codec: Codec) -> None:
    event = push(codec, UNIQUE_TRADER)
    assert type(event) is events.UniqueTrader
    assert event.unique_traders == 6
    assert event.open_ts == 1778659140000
    assert event.open_time is not None
    assert event.open_time.isoformat() == "2026-05-13T07:59:00+00:00"


def test_holders_tag_distribution_example(codec: Codec) -> None:
    event = push(codec, HOLDERS_TAGS)
    assert type(event) is events.HolderTagDistribution
    assert isinstance(event, events.HoldersMetrics)
    assert event.kind == "tag_distribution"
    assert event.address == "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
    assert event.event_ts == 1778659184000
    assert event.dev_percent == 12.0
    assert event.kol_holders == 221
    assert event.whale_holders == 2518
    assert event.bundler_holders == 3897
    assert event.sniper_holders == 102
    assert event.bot_holders == 45
    assert event.smart_money_holders == 2
    assert event.extra == {}


def test_wallet_token_balance_example(codec: Codec) -> None:
    event = push(codec, WALLET_BALANCE)
    assert type(event) is events.WalletTokenBalance
    assert isinstance(event, events.HolderWalletUpdate)
    assert event.platform_id == 16
    assert event.wallet_address == "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN"
    assert event.kind == "token_balance"
    assert event.token_address == "GYQQfZTnTokenMintAddress"
    assert event.balance == 37151378.807477
    assert event.holding_percent == 3.715
    assert event.block_height == 416995858
    assert event.event_ts == 1778659191803


def test_captured_agg_event_without_price(codec: Codec) -> None:
    event = payload(codec, "token_agg_event", json.loads(CAPTURED_AGG_WITHOUT_P))
    assert event.price is None
    assert event.aggregate_price == 1.4114
    assert event.liquidity == 12141216.56
    assert event.event_ts == 1781554539000


def test_captured_top_share(codec: Codec) -> None:
    event = payload(codec, "holders_metrics", json.loads(CAPTURED_TOP_SHARE))
    assert type(event) is events.HolderTopShare
    assert event.top10_percent == 3.9934
    assert event.top50_percent == 5.3503
    assert event.top100_percent == 5.6799
    assert event.top100_balance == 2589719.48
    assert event.extra == {}


def test_captured_metric_with_a_sparse_24h_window(codec: Codec) -> None:
    event = payload(codec, "token_metric", json.loads(CAPTURED_METRIC_TWO_WINDOWS))
    assert list(event.windows) == ["4h", "24h"]
    day = event.windows["24h"]
    assert day.txs == 311
    assert day.volume_usd == 9981.2
    for absent in ("volume_token", "buy_volume_token", "sell_volume_token", "high", "low"):
        assert getattr(day, absent) is None
    assert (day.unique_buyers, day.unique_sellers) == (None, None)
    assert event.windows["4h"].buy_volume_token == 566.9


def test_captured_liquidity_without_log_index(codec: Codec) -> None:
    event = payload(codec, "liquidity_event", json.loads(CAPTURED_LIQUIDITY_WITHOUT_LGID))
    assert event.kind == "remove"
    assert event.log_index is None
    assert event.instruction_index is None
    assert event.value_usd == 17.7


# --- decimal mode ----------------------------------------------------------------------------


def test_decimal_mode_is_exact(dcodec: Codec) -> None:
    event = push(dcodec, LATEST_PRICE, exact=True)
    assert event.price == Decimal("81187.93284788371")
    assert type(event.price) is Decimal
    assert event.percent_change_all == Decimal("131301167.42003132")
    assert event.circulating_supply == Decimal(20028706)
    assert event.crypto_id == 1
    assert type(event.crypto_id) is int


def test_decimal_mode_windows_and_counts(dcodec: Codec) -> None:
    event = push(dcodec, TOKEN_METRIC, exact=True)
    window = event.windows["4h"]
    assert window.volume_usd == Decimal("6613627.176252886")
    assert window.percent_change == Decimal("-0.01")
    assert window.txs == 28864
    assert type(window.txs) is int


def test_decimal_mode_from_float_parsed_json_keeps_the_text(dcodec: Codec) -> None:
    event = push(dcodec, TRANSACTION)  # parsed with plain floats
    assert event.value_usd == Decimal("167.11650988683866")
    assert event.token0_price_usd == Decimal("0.28760994330122636")


def test_float_mode_accepts_decimal_input(codec: Codec) -> None:
    event = push(codec, LATEST_PRICE, exact=True)
    assert type(event.price) is float
    assert event.price == 81187.93284788371


# --- tolerance -------------------------------------------------------------------------------


def test_nulls_and_missing_keys_give_none(codec: Codec) -> None:
    data = dict.fromkeys(events.wire_map(events.Transaction).values())
    event = payload(codec, "transaction", data)
    assert event.tx_hash is None
    assert event.value_usd is None
    assert event.excluded is None
    assert event.extra == {}
    assert payload(codec, "kline", {}).open is None


def test_unknown_keys_are_kept_verbatim(codec: Codec) -> None:
    data = json.loads(TRANSACTION)["data"]
    data.update({"en": "PancakeSwap v3", "tags": ["kol"], "t0pt": {"x": [1, None]}})
    event = payload(codec, "transaction", data)
    assert event.extra == {"en": "PancakeSwap v3", "tags": ["kol"], "t0pt": {"x": [1, None]}}
    assert event.log_index == 59


def test_values_of_the_wrong_type_move_to_extra(codec: Codec) -> None:
    data = {"cid": 1, "p": 2.5, "vu": "lots", "mc": True, "cs": [1], "p24h": {"v": 1}}
    event = payload(codec, "crypto_latest_price", data)
    assert (event.volume_24h, event.market_cap, event.circulating_supply) == (None, None, None)
    assert event.percent_change_24h is None
    assert event.extra == {"vu": "lots", "mc": True, "cs": [1], "p24h": {"v": 1}}


def test_booleans_are_not_counts(codec: Codec) -> None:
    event = payload(codec, "transaction", {"lgid": True, "qi": False, "ex": 1, "tx": 5})
    assert event.log_index is None
    assert event.quote_index is None
    assert event.excluded is None
    assert event.tx_hash is None
    assert event.extra == {"lgid": True, "qi": False, "ex": 1, "tx": 5}


def test_huge_and_tiny_numbers(codec: Codec, dcodec: Codec) -> None:
    text = '{"cid": 1, "p": 1e-18, "vu": 1e30, "mc": 123456789012345678901234567890, "cs": 1e400}'
    event = payload(codec, "crypto_latest_price", json.loads(text))
    assert event.price == 1e-18
    assert event.volume_24h == 1e30
    assert event.market_cap == 1.2345678901234568e29
    assert event.circulating_supply == math.inf
    exact = payload(dcodec, "crypto_latest_price", json.loads(text, parse_float=Decimal))
    assert exact.price == Decimal("1E-18")
    assert exact.market_cap == Decimal(123456789012345678901234567890)
    assert exact.circulating_supply == Decimal("1e400")


def test_integral_numbers_and_numeric_strings(codec: Codec, dcodec: Codec) -> None:
    event = payload(codec, "kline", {"o": "0.5", "c": 2, "ot": 1778649420000.0, "h": "1e3"})
    assert (event.open, event.close, event.high) == (0.5, 2.0, 1000.0)
    assert event.open_ts == 1778649420000
    assert type(event.open_ts) is int
    assert payload(dcodec, "kline", {"o": "0.10"}).open == Decimal("0.10")
    assert payload(codec, "unique_trader", {"ut": "17"}).unique_traders == 17
    odd = payload(codec, "unique_trader", {"ut": 1.5, "ot": "soon"})
    assert (odd.unique_traders, odd.open_ts) == (None, None)
    assert odd.extra == {"ut": 1.5, "ot": "soon"}
    loose = payload(codec, "kline", {"o": " 1", "c": "0x10", "h": "NaN", "l": "1_000"})
    assert loose.extra == {"o": " 1", "c": "0x10", "h": "NaN", "l": "1_000"}


def test_integer_fields_refuse_absurd_magnitudes(dcodec: Codec) -> None:
    data = json.loads('{"ut": 1e999999, "ot": 5e30}', parse_float=Decimal)
    event = payload(dcodec, "unique_trader", data)
    assert (event.unique_traders, event.open_ts) == (None, None)
    assert set(event.extra) == {"ut", "ot"}


def test_unknown_holder_kind_decodes_to_the_base_class(codec: Codec) -> None:
    data = {"pid": 14, "a": "0xabc", "tp": "whale_alert", "ts": 5, "wc": 3, "xs": [1]}
    event = payload(codec, "holders_metrics", data)
    assert type(event) is events.HoldersMetrics
    assert event.kind == "whale_alert"
    assert (event.platform_id, event.address, event.event_ts) == (14, "0xabc", 5)
    assert event.extra == {"wc": 3, "xs": [1]}
    untagged = payload(codec, "holder_wallet_update", {"wa": "W", "b": 1})
    assert type(untagged) is events.HolderWalletUpdate
    assert untagged.kind is None
    assert untagged.extra == {"b": 1}
    odd = payload(codec, "holder_wallet_update", {"tp": ["token_balance"]})
    assert type(odd) is events.HolderWalletUpdate
    assert odd.extra == {"tp": ["token_balance"]}


@pytest.mark.parametrize(
    ("short", "tp", "cls"),
    [
        ("holders_metrics", "holder_count", events.HolderCount),
        ("holders_metrics", "tag_pnl", events.HolderTagPnl),
        ("holders_metrics", "tag_balance", events.HolderTagBalance),
        ("holder_wallet_update", "native_balance", events.WalletNativeBalance),
        ("holder_wallet_update", "pnl_stats", events.WalletPnlStats),
    ],
)
def test_undocumented_holder_kinds_keep_their_keys(
    codec: Codec,
    short: str,
    tp: str,
    cls: type[events.HoldersMetrics] | type[events.HolderWalletUpdate],
) -> None:
    event = payload(codec, short, {"pid": 1, "tp": tp, "ts": 9, "hc": 1200, "nb": 0.5})
    assert type(event) is cls
    assert event.kind == tp
    assert event.extra == {"hc": 1200, "nb": 0.5}


def test_wallet_last_active_and_position_time(codec: Codec) -> None:
    active = payload(codec, "holder_wallet_update", {"tp": "last_active", "lat": 1778659191803})
    assert type(active) is events.WalletLastActive
    assert active.last_active_ts == 1778659191803
    assert active.last_active_time is not None
    assert active.last_active_time.isoformat() == "2026-05-13T07:59:51.803000+00:00"
    data = {"tp": "position_time", "spot": 1778659000000, "spct": None, "a": "MINT"}
    position = payload(codec, "holder_wallet_update", data)
    assert type(position) is events.WalletPositionTime
    assert position.opened_ts == 1778659000000
    assert position.cleared_ts is None
    assert position.cleared_time is None
    assert position.extra == {"a": "MINT"}


def test_unknown_pool_windows_are_kept(codec: Codec) -> None:
    data = json.loads(POOL_METRIC)["data"]
    data["7d"] = {"bvu": 1, "ut": 5}
    data["30m"] = {"ut": 7, "txs": 12}
    data["meta"] = {"ut": 1}
    data["1d"] = "not an object"
    event = payload(codec, "pool_metric", data)
    assert list(event.windows) == ["5m", "1h", "4h", "24h", "7d", "30m"]
    assert event.windows["7d"].buy_volume_usd == 1.0
    assert event.windows["30m"].unique_traders == 7
    assert event.windows["30m"].extra == {"txs": 12}
    assert event.extra == {"meta": {"ut": 1}, "1d": "not an object"}


def test_token_metric_elements_that_cannot_be_windows_stay_in_extra(codec: Codec) -> None:
    first = {"win": "1h", "txs": 1}
    second = {"win": "1h", "txs": 2}
    data = {"sts": [first, 7, {"txs": 3}, second, {"win": "5m", "zz": 1}]}
    event = payload(codec, "token_metric", data)
    assert list(event.windows) == ["1h", "5m"]
    assert event.windows["1h"].txs == 2
    assert event.windows["5m"].extra == {"zz": 1}
    assert event.extra == {"sts": [7, {"txs": 3}, first]}
    assert payload(codec, "token_metric", {"sts": {"win": "1h"}}).extra == {"sts": {"win": "1h"}}
    assert payload(codec, "token_metric", {"sts": None}).windows == {}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, [], [{"cid": 1}], "text", 3, 2.5, True])
@pytest.mark.parametrize("short", sorted(row.short for row in CHANNELS.values()))
def test_a_payload_that_is_not_an_object_is_a_decode_error(
    codec: Codec, short: str, data: Any
) -> None:
    with pytest.raises(DecodeError, match="payload must be a JSON object") as info:
        payload(codec, short, data)
    assert info.value.kind == "undecodable"
    assert info.value.channel == get_channel(short).name
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"p": 1.0}, "'cid' is missing"),
        ({"cid": None, "p": 1.0}, "'cid' is null"),
        ({"cid": "one", "p": 1.0}, "'cid' has an unusable value 'one'"),
        ({"cid": True, "p": 1.0}, "'cid' has an unusable value True"),
        ({"cid": 1}, "'p' is missing"),
        ({"cid": 1, "p": None}, "'p' is null"),
        ({"cid": 1, "p": False}, "'p' has an unusable value False"),
    ],
)
def test_each_required_key_is_required(codec: Codec, data: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        payload(codec, "crypto_latest_price", data)
    assert info.value.channel == "market@crypto_latest_price"


@pytest.mark.parametrize("ts", [None, "later", 1.5, True, [1]])
def test_the_envelope_ts_must_be_epoch_ms(codec: Codec, ts: Any) -> None:
    with pytest.raises(DecodeError, match="envelope ts"):
        payload(codec, "kline", {}, ts=ts)


def test_params_must_be_an_object(codec: Codec) -> None:
    with pytest.raises(DecodeError, match="params must be an object"):
        codec.decode(get_channel("kline"), ["x"], {}, 1)  # type: ignore[arg-type]


# --- to_dict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("short", sorted(EXAMPLES))
def test_to_dict_is_json_and_leaves_out_the_envelope(codec: Codec, short: str) -> None:
    event = push(codec, EXAMPLES[short])
    out = codec.to_dict(event)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert not {"channel", "params", "ts"} & set(out)
    assert list(out)[-1] == "extra"
    for name in events.wire_map(type(event)):
        assert name in out


def test_to_dict_values(codec: Codec, dcodec: Codec) -> None:
    out = codec.to_dict(push(codec, TOKEN_METRIC))
    assert out["price"] == 0.9997425990337028
    assert out["windows"]["4h"]["txs"] == 28864
    assert out["windows"]["4h"]["buy_volume_token"] is None
    exact = dcodec.to_dict(push(dcodec, LATEST_PRICE, exact=True))
    assert exact["price"] == "81187.93284788371"
    assert exact["crypto_id"] == 1
    assert Decimal(exact["percent_change_all"]) == Decimal("131301167.42003132")
    text = json.dumps(exact)
    assert '"price": "81187.93284788371"' in text


def test_to_dict_makes_odd_values_json_safe(codec: Codec, dcodec: Codec) -> None:
    event = payload(dcodec, "kline", {"o": math.inf, "zz": [Decimal("1.10"), math.nan]})
    out = dcodec.to_dict(event)
    assert out["open"] == "Infinity"
    assert out["extra"] == {"zz": ["1.10", "nan"]}
    json.dumps(out, allow_nan=False)
    infinite = codec.to_dict(payload(codec, "kline", {"o": 1e400, "c": -1e400}))
    assert (infinite["open"], infinite["close"]) == ("inf", "-inf")


# --- the converter ---------------------------------------------------------------------------


def test_make_converter_builds_a_private_converter() -> None:
    first, second = make_converter(), make_converter(decimal=True)
    assert first is not cattrs.global_converter
    assert first is not second
    frame = json.loads(LATEST_PRICE)
    event = first.structure(frame, events.CryptoLatestPrice)
    assert event.price == 81187.93284788371
    assert second.structure(frame, events.CryptoLatestPrice).price == Decimal("81187.93284788371")
    window = first.structure({"win": "1m", "txs": 4}, events.TokenMetricWindow)
    assert window == events.TokenMetricWindow(window="1m", txs=4)
    # The global converter is left alone: it knows attribute names, not wire keys.
    plain = {"channel": "c", "params": {}, "ts": 1, "unique_traders": 3, "ut": 9}
    assert cattrs.global_converter.structure(plain, events.UniqueTrader).unique_traders == 3


def test_structuring_a_holder_base_class_routes_on_tp() -> None:
    converter = make_converter()
    frame = json.loads(HOLDERS_TAGS)
    assert type(converter.structure(frame, events.HoldersMetrics)) is events.HolderTagDistribution


# --- property: anything JSON gives an event or a DecodeError ---------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_WIRE_KEYS = sorted(
    {
        key
        for cls in (events.TokenMetricWindow, events.PoolMetricWindow)
        for key in events.wire_map(cls).values()
    }
    | {
        key
        for cls in (
            events.CryptoLatestPrice,
            events.Transaction,
            events.LiquidityEvent,
            events.TokenMetric,
            events.WalletTokenBalance,
            events.WalletPositionTime,
            events.WalletLastActive,
            events.HolderTopShare,
            events.HolderTagDistribution,
        )
        for key in events.wire_map(cls).values()
    }
    | {"5m", "7d", "30m", "1h"}
)
_TP = st.sampled_from(
    ["tag_distribution", "top_share", "holder_count", "token_balance", "last_active", "??"]
)
_payloads = _json | st.dictionaries(
    st.sampled_from(_WIRE_KEYS) | st.text(max_size=3),
    _json | _TP | st.lists(st.dictionaries(st.sampled_from(_WIRE_KEYS), _json), max_size=3),
    max_size=10,
)
_CODECS = {False: Codec(), True: Codec(decimal=True)}


@settings(max_examples=300, deadline=None, database=None)
@given(
    short=st.sampled_from(sorted(row.short for row in CHANNELS.values())),
    data=_payloads,
    decimal=st.booleans(),
)
def test_any_json_gives_an_event_or_a_decode_error(short: str, data: Any, decimal: bool) -> None:
    codec = _CODECS[decimal]
    row = get_channel(short)
    try:
        event = codec.decode(row, {"platform_id": 14}, data, 1778663880111)
    except DecodeError as exc:
        # Either outcome is valid here; an error must name its channel.
        assert exc.channel == row.name  # noqa: PT017
        return
    assert isinstance(event, row.event_type)
    # Nothing is lost: every non-null key is either decoded or kept in extra.
    known = {wire: name for name, wire in events.wire_map(type(event)).items()}
    for key, value in data.items():
        if value is None or value == [] or key in event.extra:
            continue
        if key in known:
            assert getattr(event, known[key]) not in (None, {})
        else:
            assert key in event.windows  # type: ignore[attr-defined]
    json.dumps(codec.to_dict(event), allow_nan=False)


@settings(max_examples=100, deadline=None, database=None)
@given(
    short=st.sampled_from(sorted(row.short for row in CHANNELS.values())),
    params=_json,
    ts=_json,
)
def test_any_envelope_gives_an_event_or_a_decode_error(short: str, params: Any, ts: Any) -> None:
    row = get_channel(short)
    data = {"cid": 1, "p": 2.0, "tp": "top_share", "ut": 3}
    try:
        event = _CODECS[False].decode(row, params, data, ts)
    except DecodeError as exc:
        # Either outcome is valid here; an error must name its channel.
        assert exc.channel == row.name  # noqa: PT017
        return
    assert event.params is params
    assert type(event.ts) is int


# --- to_dict: any depth, the output of the recursive copy it replaced ------------------------


def _recursive_json_safe(value: Any) -> Any:
    """The JSON-safe copy as to_dict made it when it recursed: the reference for the walk."""
    kind = type(value)
    if kind is Decimal:
        return str(value)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _recursive_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recursive_json_safe(v) for v in value]
    if value is None or kind in (str, int, bool):
        return value
    return str(value)


def _recursive_to_dict(obj: Any) -> dict[str, Any]:
    """Codec.to_dict as it was when it recursed: payload fields, then ``extra``."""
    names = [
        field.name
        for field in attrs.fields(type(obj))
        if field.name not in ("channel", "params", "ts", "extra")
    ]
    out: dict[str, Any] = {}
    for name in [*names, "extra"]:
        value = getattr(obj, name)
        if isinstance(value, Mapping) and name == "windows":
            out[name] = {key: _recursive_to_dict(item) for key, item in value.items()}
        else:
            out[name] = _recursive_json_safe(value)
    return out


def assert_same_as_recursive(codec: Codec, event: Any) -> None:
    # repr() tells 1 from 1.0 and True, and shows the key order, which == ignores.
    assert repr(codec.to_dict(event)) == repr(_recursive_to_dict(event))


CAPTURED = {
    "token_agg_event": CAPTURED_AGG_WITHOUT_P,
    "holders_metrics": CAPTURED_TOP_SHARE,
    "token_metric": CAPTURED_METRIC_TWO_WINDOWS,
    "liquidity_event": CAPTURED_LIQUIDITY_WITHOUT_LGID,
}


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_to_dict_of_every_documented_push_is_unchanged(decimal: bool) -> None:
    codec = Codec(decimal=decimal)
    decoded = [push(codec, text, exact=decimal) for text in EXAMPLES.values()]
    for short, text in CAPTURED.items():
        data = json.loads(text, parse_float=Decimal) if decimal else json.loads(text)
        decoded.append(payload(codec, short, data))
    assert {event.channel for event in decoded} == set(CHANNELS)
    for event in decoded:
        assert_same_as_recursive(codec, event)


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_to_dict_of_the_simulator_feed_is_unchanged(sim: Simulator, decimal: bool) -> None:
    recorder = stream_feed(sim, decimal=decimal, per_channel=3)
    codec = Codec(decimal=decimal)
    kinds = {type(event) for event in recorder.events}
    assert {event.channel for event in recorder.events} == set(FEED_CHANNELS)
    assert len(kinds) > len(FEED_CHANNELS), "holder kinds are among the events"
    for event in recorder.events:
        assert_same_as_recursive(codec, event)


class _Side(enum.IntEnum):
    BUY = 1


class _Label(str):
    pass


def test_to_dict_of_odd_values_in_extra_is_unchanged(dcodec: Codec) -> None:
    shared = [Decimal("2.50"), (1, 2)]
    odd = {
        "numbers": [Decimal("1.10"), Decimal("-0E-8"), Decimal("NaN"), math.inf, -0.0, 10**30],
        "tuple": (1, (2.5, [None, True]), ()),
        "keys": {1: "int", None: "none", 2.5: "float", "1": "collides with 1"},
        "mappings": OrderedDict(a=MappingProxyType({"b": [{}]})),
        "objects": [dt.datetime(2026, 5, 13, tzinfo=dt.timezone.utc), b"raw", _Side.BUY],
        "subclasses": [_Label("label"), True, False],
        "twice": [shared, {"again": shared}],
        "empty": [[], {}, [[[]]]],
    }
    event = payload(dcodec, "kline", {"o": 1, "odd": odd})
    assert_same_as_recursive(dcodec, event)
    out = dcodec.to_dict(event)["extra"]["odd"]
    assert out["keys"] == {"1": "collides with 1", "None": "none", "2.5": "float"}
    assert out["objects"][1:] == ["b'raw'", "1"]
    assert out["twice"] == [["2.50", [1, 2]], {"again": ["2.50", [1, 2]]}]
    pools = payload(dcodec, "pool_metric", {"pid": 16, "5m": {"ut": 2, "odd": odd}, "7d": {}})
    assert_same_as_recursive(dcodec, pools)


_scalars_and_objects = (
    _scalars
    | st.decimals(allow_nan=True)
    | st.datetimes(timezones=st.just(dt.timezone.utc))
    | st.sampled_from([_Side.BUY, _Label("label"), b"raw"])
)
_trees = st.recursive(
    _scalars_and_objects,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(extra=st.dictionaries(st.text(max_size=4), _trees, max_size=4))
def test_to_dict_of_any_extra_is_unchanged(extra: dict[str, Any]) -> None:
    codec = _CODECS[True]
    event = payload(codec, "kline", {"o": 1, **extra})
    assert_same_as_recursive(codec, event)


def _nest(leaf: Any, depth: int) -> Any:
    """``leaf`` inside ``depth`` containers, from the outside a list, a dict, a tuple, a list..."""
    value = leaf
    for level in reversed(range(depth)):
        value = ([value], {"k": value}, (value,))[level % 3]
    return value


def _unnest(value: Any, depth: int) -> Any:
    """The leaf of a JSON-safe copy of ``_nest(leaf, depth)``, checking every level on the way."""
    for level in range(depth):
        if level % 3 == 1:
            assert type(value) is dict and list(value) == ["k"], level
            value = value["k"]
        else:
            assert type(value) is list and len(value) == 1, level
            value = value[0]
    return value


def test_to_dict_copies_extra_at_any_depth(dcodec: Codec) -> None:
    depth = 20 * sys.getrecursionlimit()
    deep = _nest(Decimal("0.10"), depth)
    # Built by hand: the decoder refuses a value this deep (MAX_EXTRA_DEPTH), an event made
    # in code may still hold one.
    event = attrs.evolve(payload(dcodec, "kline", {"o": 1}), extra={"deep": deep})
    assert _unnest(dcodec.to_dict(event)["extra"]["deep"], depth) == "0.10"
    pools = payload(dcodec, "pool_metric", {"pid": 16, "5m": {"ut": 2}})
    windows = {"5m": attrs.evolve(pools.windows["5m"], extra={"deep": deep})}
    window = dcodec.to_dict(attrs.evolve(pools, windows=windows))["windows"]["5m"]
    assert window["unique_traders"] == 2
    assert _unnest(window["extra"]["deep"], depth) == "0.10"


def test_to_dict_names_a_container_that_holds_itself(codec: Codec) -> None:
    loop: list[Any] = [1]
    loop.append({"back": loop})
    # Built by hand: the decoder refuses such a value (it nests without end).
    event = attrs.evolve(payload(codec, "kline", {"o": 1}), extra={"loop": loop})
    where = r"^extra\['loop'\]\[1\]\['back'\] is extra\['loop'\] again"
    with pytest.raises(ValueError, match=where):
        codec.to_dict(event)
    # The same container twice, once inside a sibling, is no loop.
    once = [1]
    event = payload(codec, "kline", {"o": 1, "twice": [once, {"again": once}]})
    assert codec.to_dict(event)["extra"] == {"twice": [[1], {"again": [1]}]}


# --- how deep a kept value may nest ----------------------------------------------------------


def _json_nest(depth: int) -> Any:
    """``depth`` levels of JSON containers, from the outside a list, an object, a list..."""
    value: Any = "leaf"
    for level in reversed(range(depth)):
        value = [value] if level % 2 == 0 else {"k": value}
    return value


# Pushes that keep the value given in an ``extra``, with the key the error names.
_KEPT = {
    "unknown key": ("kline", lambda v: {"o": 1, "deep": v}, "key 'deep'"),
    "unfit known key": ("kline", lambda v: {"o": v}, "key 'o'"),
    "token_metric sts element": ("token_metric", lambda v: {"sts": v}, "key 'sts'"),
    "token_metric window": (
        "token_metric",
        lambda v: {"sts": [{"win": "1h", "txs": 1, "deep": v}]},
        "key 'deep' in window '1h'",
    ),
    "pool_metric window": (
        "pool_metric",
        lambda v: {"pid": 16, "5m": {"ut": 2}, "24h": {"ut": 3, "deep": v}},
        "key 'deep' in window '24h'",
    ),
    "holder kind": ("holders_metrics", lambda v: {"tp": "top_share", "deep": v}, "key 'deep'"),
    "unknown holder kind": ("holders_metrics", lambda v: {"tp": "??", "deep": v}, "key 'deep'"),
}
# Params of the type the generated decoders take, and of one only the general path takes.
_PARAMS = {"fast": lambda: {"platform_id": 14}, "general": lambda: MappingProxyType({"a": 1})}


@pytest.mark.parametrize("path", sorted(_PARAMS))
@pytest.mark.parametrize("where", sorted(_KEPT))
@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_a_kept_value_may_nest_max_extra_depth_levels(where: str, path: str, decimal: bool) -> None:
    short, build, _ = _KEPT[where]
    value = _json_nest(MAX_EXTRA_DEPTH)
    event = _CODECS[decimal].decode(get_channel(short), _PARAMS[path](), build(value), 1)
    kept = [event.extra, *(window.extra for window in getattr(event, "windows", {}).values())]
    assert value in [extra.get(key) for extra in kept for key in ("deep", "o", "sts")]


@pytest.mark.parametrize("path", sorted(_PARAMS))
@pytest.mark.parametrize("where", sorted(_KEPT))
@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_a_kept_value_nested_deeper_makes_the_push_a_decode_error(
    where: str, path: str, decimal: bool
) -> None:
    short, build, key = _KEPT[where]
    row = get_channel(short)
    with pytest.raises(DecodeError) as info:
        _CODECS[decimal].decode(row, _PARAMS[path](), build(_json_nest(MAX_EXTRA_DEPTH + 1)), 1)
    assert info.value.kind == "too_deep"
    assert info.value.channel == row.name
    assert isinstance(info.value, ProtocolError)
    assert str(info.value) == (
        f"{row.name}: the value of {key} nests deeper than {MAX_EXTRA_DEPTH} levels, "
        "the most cmcsync accepts"
    )


def test_only_containers_count_as_levels(codec: Codec) -> None:
    wide = [{"k": [1, "two", None, 2.5, True]} for _ in range(1_000)]
    scalars = {"deep": _json_nest(MAX_EXTRA_DEPTH - 1), "flat": "[" * 1_000, "wide": wide}
    event = payload(codec, "kline", {"o": 1, **scalars})
    assert event.extra == scalars


def test_a_value_that_holds_itself_is_refused(codec: Codec) -> None:
    loop: list[Any] = [1]
    loop.append({"back": loop})
    with pytest.raises(DecodeError, match="key 'loop' nests deeper") as info:
        payload(codec, "kline", {"o": 1, "loop": loop})
    assert info.value.kind == "too_deep"


def test_the_converter_refuses_a_value_nested_too_deep() -> None:
    frame = {
        "channel": "onchain@kline",
        "params": {},
        "ts": 1,
        "data": {"deep": _json_nest(MAX_EXTRA_DEPTH + 1)},
    }
    with pytest.raises(DecodeError, match="key 'deep' nests deeper") as info:
        make_converter().structure(frame, events.Kline)
    assert info.value.kind == "too_deep"
