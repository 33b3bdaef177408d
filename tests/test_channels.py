"""The channel table: one row per channel, params validated before anything is sent."""

from __future__ import annotations

import pytest

from cmcsync import CHANNELS, ConfigError
from cmcsync.channels import get_channel, normalize_address

EVM = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
SOLANA = "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN"


def test_the_ten_documented_channels() -> None:
    assert sorted(CHANNELS) == sorted(
        [
            "market@crypto_latest_price",
            "onchain@token_agg_event",
            "onchain@transaction",
            "onchain@liquidity_event",
            "onchain@kline",
            "onchain@token_metric",
            "onchain@pool_metric",
            "onchain@unique_trader",
            "onchain@holders_metrics",
            "onchain@holder_wallet_update",
        ]
    )


def test_rows_name_their_hook_and_list_param() -> None:
    assert get_channel("kline").hook == "cmcsync_on_kline"
    assert get_channel("onchain@pool_metric").list_param == "pool_address"
    assert get_channel("holder_wallet_update").list_param == "wallet_address"
    assert get_channel("transaction").dedupe_key is not None
    assert get_channel("kline").dedupe_key is None


def test_unknown_channel_lists_the_real_ones() -> None:
    with pytest.raises(ConfigError, match="market@kline") as info:
        get_channel("market@kline")
    assert "onchain@kline" in str(info.value)
    assert info.value.param == "channel"


def test_one_subscription_per_list_element_in_order_without_repeats() -> None:
    row = get_channel("crypto_latest_price")
    assert row.split({"crypto_ids": [1, "1027", 1]}) == [{"crypto_ids": 1}, {"crypto_ids": 1027}]
    assert row.split({"crypto_ids": 5}) == [{"crypto_ids": 5}]


def test_evm_addresses_fold_case_and_base58_does_not() -> None:
    row = get_channel("onchain@transaction")
    out = row.split({"platform_id": "14", "address": [EVM.upper().replace("0X", "0x"), EVM]})
    assert out == [{"platform_id": 14, "address": EVM}]
    sol = row.split({"platform_id": 16, "address": [SOLANA, SOLANA.lower()]})
    assert [p["address"] for p in sol] == [SOLANA, SOLANA.lower()]
    assert normalize_address(SOLANA) == SOLANA


@pytest.mark.parametrize(
    ("channel", "params", "param"),
    [
        ("crypto_latest_price", {}, "crypto_ids"),
        ("crypto_latest_price", {"crypto_ids": []}, "crypto_ids"),
        ("crypto_latest_price", {"crypto_ids": [1.5]}, "crypto_ids"),
        ("crypto_latest_price", {"crypto_ids": [True]}, "crypto_ids"),
        ("crypto_latest_price", {"crypto_ids": ["btc"]}, "crypto_ids"),
        ("crypto_latest_price", {"crypto_ids": [1], "mode": "full"}, "mode"),
        ("kline", {"platform_id": 14, "address": EVM}, "interval"),
        ("kline", {"platform_id": 14, "address": EVM, "interval": "1h"}, "interval"),
        ("kline", {"platform_id": "bsc", "address": EVM, "interval": "1m"}, "platform_id"),
        ("transaction", {"address": EVM}, "platform_id"),
        ("transaction", {"platform_id": 14, "address": [""]}, "address"),
        ("pool_metric", {"platform_id": 14, "address": EVM}, "address"),
        ("holder_wallet_update", {"platform_id": 14}, "wallet_address"),
    ],
)
def test_bad_params_name_the_param(channel: str, params: dict[str, object], param: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_channel(channel).split(params)
    assert info.value.param == param
    assert param in str(info.value)


def test_unique_trader_takes_the_longer_intervals_kline_does_not() -> None:
    assert get_channel("unique_trader").split({"platform_id": 14, "address": EVM, "interval": "1d"})
    assert get_channel("kline").expected_cadence({"interval": "5m"}) == 300.0
    assert get_channel("crypto_latest_price").expected_cadence({"crypto_ids": 1}) == 15.0


def test_scalar_form_reads_a_push_echo() -> None:
    row = get_channel("kline")
    echo = {"platform_id": 14, "address": EVM.upper().replace("0X", "0x"), "interval": "1m"}
    assert row.scalar_form(echo) == {"platform_id": 14, "interval": "1m", "address": EVM}
    assert row.scalar_form({"platform_id": 14}) is None
