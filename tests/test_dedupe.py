"""Dropping the second copy of a swap or liquidity event, with bounded memory."""

from __future__ import annotations

from typing import Any

import pytest

from cmcsync import events
from cmcsync._codec import Codec
from cmcsync._dedupe import Deduper
from cmcsync.channels import get_channel
from cmcsync.exceptions import ConfigError

TRANSACTION = get_channel("onchain@transaction")
LIQUIDITY = get_channel("onchain@liquidity_event")
EVM_TX = "0xade908a367c85915a89719ddce9e95a864bd2c9691bb28c6d6b86d907181f7aa"
SOLANA_TX = (
    "5h6xBEauJ3PK6SWCZ1PGjBvj8vDdWG3KpwATGy1ARAXFSDwt8GFXM7W5Ncn16wmqokgpiKRLuS83KUxyZyv2sUYv"
)
TOKEN0 = "0x5feccd17c393caf1001d18164236a37e731fcb9d"
TOKEN1 = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"


def swap(tx: str | None = EVM_TX, **fields: Any) -> events.Transaction:
    return events.Transaction(channel=TRANSACTION.name, params={}, ts=0, tx_hash=tx, **fields)


def test_the_second_copy_of_an_evm_swap_is_dropped() -> None:
    codec, deduper = Codec(), Deduper()
    data = {"pid": 14, "tx": EVM_TX, "lgid": 59, "t0a": TOKEN0, "t1a": TOKEN1, "vu": 167.1}
    # The same swap, once per subscribed token.
    first = codec.decode(TRANSACTION, {"platform_id": 14, "address": TOKEN0}, data, 1)
    second = codec.decode(TRANSACTION, {"platform_id": 14, "address": TOKEN1}, dict(data), 2)
    assert deduper.is_duplicate(TRANSACTION, first) is False
    assert deduper.is_duplicate(TRANSACTION, second) is True
    assert deduper.dropped == 1


def test_the_second_copy_of_a_solana_swap_is_dropped() -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(SOLANA_TX, instruction_index=3))
    assert deduper.is_duplicate(TRANSACTION, swap(SOLANA_TX, instruction_index=3))
    assert not deduper.is_duplicate(TRANSACTION, swap(SOLANA_TX, instruction_index=4))
    assert deduper.dropped == 1


def test_other_swaps_of_the_same_transaction_are_kept() -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=59))
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=60))
    assert not deduper.is_duplicate(TRANSACTION, swap("0x01", log_index=59))
    assert deduper.dropped == 0


def test_channels_do_not_share_keys() -> None:
    deduper = Deduper()
    liquidity = events.LiquidityEvent(
        channel=LIQUIDITY.name, params={}, ts=0, tx_hash=EVM_TX, log_index=59
    )
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=59))
    assert not deduper.is_duplicate(LIQUIDITY, liquidity)
    assert deduper.is_duplicate(LIQUIDITY, liquidity)


def test_the_log_index_wins_over_the_instruction_index() -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=7, instruction_index=1))
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=7, instruction_index=2))


@pytest.mark.parametrize(
    "event",
    [swap(None, log_index=1), swap(log_index=None), swap(None)],
    ids=["no tx", "no index", "nothing"],
)
def test_events_without_an_identity_are_never_duplicates(event: events.Transaction) -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, event)
    assert not deduper.is_duplicate(TRANSACTION, event)
    assert deduper.dropped == 0


def test_channels_without_a_dedupe_key_never_drop() -> None:
    deduper = Deduper()
    kline_row = get_channel("kline")
    assert kline_row.dedupe_key is None
    candle = events.Kline(channel=kline_row.name, params={}, ts=0, open_ts=1)
    assert not deduper.is_duplicate(kline_row, candle)
    assert not deduper.is_duplicate(kline_row, candle)


def test_keys_beyond_the_window_are_forgotten() -> None:
    deduper = Deduper(window=3)
    for index in range(4):
        assert not deduper.is_duplicate(TRANSACTION, swap(log_index=index))
    # Index 0 is the fifth key back: forgotten, so delivered again.
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=0))
    # Indexes 2, 3 and (again) 0 are the last three: remembered.
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=3))
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=0))
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=1))
    assert deduper.dropped == 2


def test_the_window_is_per_channel() -> None:
    deduper = Deduper(window=1)
    liquidity = events.LiquidityEvent(
        channel=LIQUIDITY.name, params={}, ts=0, tx_hash=EVM_TX, log_index=1
    )
    assert not deduper.is_duplicate(LIQUIDITY, liquidity)
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=5))
    assert deduper.is_duplicate(LIQUIDITY, liquidity)


def test_memory_stays_bounded() -> None:
    deduper = Deduper(window=100)
    for index in range(10_000):
        deduper.is_duplicate(TRANSACTION, swap(log_index=index))
    assert deduper.dropped == 0
    # Still remembers the most recent keys.
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=9_999))
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=9_899))


@pytest.mark.parametrize("window", [0, -1, True, 2.5, "10"])
def test_a_bad_window_is_refused(window: Any) -> None:
    with pytest.raises(ConfigError, match="dedupe window") as info:
        Deduper(window=window)
    assert info.value.param == "dedupe_window"
