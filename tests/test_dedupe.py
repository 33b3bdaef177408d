"""Dropping the second copy of a swap or liquidity event, with bounded memory."""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Hashable
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- exactness: equal keys exactly when hash and index are equal ----------------------------


class Text(str):
    """A ``str`` subclass, as a caller's own event values might be."""


def test_hashes_differing_only_in_letter_case_are_different_events() -> None:
    deduper = Deduper()
    upper = "0x" + EVM_TX[2:].upper()
    assert not deduper.is_duplicate(TRANSACTION, swap(EVM_TX, log_index=59))
    assert not deduper.is_duplicate(TRANSACTION, swap(upper, log_index=59))
    assert deduper.is_duplicate(TRANSACTION, swap(upper, log_index=59))
    assert deduper.dropped == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("0x6162", "ab"),  # the bytes 0x61 0x62 are the text "ab"
        ("0xab", "\xab"),  # ...and 0xab is the Latin-1 text "\xab"
        ("0xab", "ab"),
        ("0xab", "0x0ab"),
        ("0xab", "0xab "),
        ("0xab", "0x ab"),
        (SOLANA_TX, SOLANA_TX[:-1]),
    ],
)
def test_other_spellings_of_the_same_bytes_are_different_events(first: str, second: str) -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(first, log_index=1))
    assert not deduper.is_duplicate(TRANSACTION, swap(second, log_index=1))
    assert deduper.dropped == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("0xab1", 2), ("0xab", 12)),  # the same text once hash and index are joined
        (("0xab", 1), ("0xab\x00", 1)),
        (("0xab\x00", 1), ("0xab", 1)),
        (("0xab\x00\x01", 0), ("0xab", 1)),
        (("0xab", 127), ("0xab", 128)),
        (("0xab", 511), ("0xab", 512)),
        (("0xab", 16_383), ("0xab", 16_384)),
        (("0xab", -1), ("0xab", 511)),  # a negative index counts from no table's end
        (("0xab", -1), ("0xab", 16_383)),
        (("0xab", 2**64 + 1), ("0xab", 1)),
    ],
)
def test_the_index_never_blurs_into_the_hash(
    first: tuple[str, int], second: tuple[str, int]
) -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(first[0], log_index=first[1]))
    assert not deduper.is_duplicate(TRANSACTION, swap(second[0], log_index=second[1]))
    assert deduper.is_duplicate(TRANSACTION, swap(first[0], log_index=first[1]))
    assert deduper.is_duplicate(TRANSACTION, swap(second[0], log_index=second[1]))


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        (1, True, True),  # True == 1: one event, as == says
        (0, False, True),
        (1, 1.0, True),
        (600, 600.0, True),
        (20_000, Decimal(20_000), True),
        (-5, -5.0, True),
        (1, "1", False),
        (1, 1.5, False),
        (1, (1,), False),
        (float("inf"), 2**1024, False),
    ],
)
def test_an_index_that_is_no_plain_int_keys_as_equality_says(
    first: Any, second: Any, same: bool
) -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(log_index=first))
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=second)) is same
    assert deduper.is_duplicate(TRANSACTION, swap(log_index=second))


def test_a_str_subclass_hash_is_keyed_by_its_text() -> None:
    deduper = Deduper()
    assert not deduper.is_duplicate(TRANSACTION, swap(Text(EVM_TX), log_index=3))
    assert deduper.is_duplicate(TRANSACTION, swap(EVM_TX, log_index=3))
    assert not deduper.is_duplicate(TRANSACTION, swap(EVM_TX, log_index=20_000))
    assert deduper.is_duplicate(TRANSACTION, swap(Text(EVM_TX), log_index=20_000))


def test_the_window_forgets_exactly_its_oldest_key() -> None:
    deduper = Deduper()  # the default window: 10,000 keys
    # Every kind of key: spelled indexes in and past the table, and (hash, index) tuples.
    pairs = [(f"0x{n:064x}", n % 700) for n in range(9_000)]
    pairs += [(f"{n:088d}", n) for n in range(990)]
    pairs += [(EVM_TX, -n) for n in range(1, 11)]
    assert len(pairs) == deduper.window
    for tx, index in pairs:
        assert not deduper.is_duplicate(TRANSACTION, swap(tx, log_index=index))
    assert not deduper.is_duplicate(TRANSACTION, swap(SOLANA_TX, log_index=0))
    # The newest key pushed out the oldest one and only that one.
    for tx, index in pairs[1:]:
        assert deduper.is_duplicate(TRANSACTION, swap(tx, log_index=index))
    oldest_tx, oldest_index = pairs[0]
    assert not deduper.is_duplicate(TRANSACTION, swap(oldest_tx, log_index=oldest_index))
    assert deduper.dropped == len(pairs) - 1


def test_an_event_without_the_attributes_is_never_a_duplicate() -> None:
    deduper = Deduper()
    candle = events.Kline(channel=TRANSACTION.name, params={}, ts=0, open_ts=1)
    assert not deduper.is_duplicate(TRANSACTION, candle)
    assert not deduper.is_duplicate(TRANSACTION, candle)


def test_a_row_may_name_any_number_of_index_attributes() -> None:
    deduper = Deduper()
    longer = attrs.evolve(
        TRANSACTION, dedupe_key=("tx_hash", "log_index", "instruction_index", "block_height")
    )
    shorter = attrs.evolve(TRANSACTION, dedupe_key=("tx_hash", "instruction_index"))
    # The first index that is set identifies the event, wherever the row names it.
    assert not deduper.is_duplicate(longer, swap(block_height=7))
    assert not deduper.is_duplicate(longer, swap(instruction_index=2, block_height=7))
    assert deduper.is_duplicate(longer, swap(instruction_index=2, block_height=8))
    # Same channel name, so the same memory: (tx, 7) is the same event whichever row reads it.
    assert deduper.is_duplicate(shorter, swap(log_index=3, instruction_index=7))
    assert not deduper.is_duplicate(shorter, swap(log_index=3))


# Hashes and indexes chosen to sit next to each other in any joined or decoded form.
_TEXTS = st.text(alphabet="0xabAB1 \x00\x01\x7f\x80", max_size=5)
_HASHES = st.one_of(
    _TEXTS,
    _TEXTS.map(Text),
    st.sampled_from([EVM_TX, EVM_TX.upper(), SOLANA_TX]),
    st.binary(max_size=2),
    st.integers(0, 3),
)
_INDEXES = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([127, 128, 511, 512, 16_383, 16_384, 2**64]),
    st.booleans(),
    st.floats(allow_nan=False, min_value=-2, max_value=2**15),
    st.decimals(allow_nan=False, min_value=-2, max_value=600, places=1),
    st.text(alphabet="01", max_size=2),
)


def _as_before(pairs: list[tuple[Hashable, Hashable]], window: int) -> list[bool]:
    """What a window of plain ``(hash, index)`` tuples says of each pair: the reference."""
    seen: set[tuple[Hashable, Hashable]] = set()
    order: deque[tuple[Hashable, Hashable]] = deque()
    said = []
    for pair in pairs:
        said.append(pair in seen)
        if pair not in seen:
            seen.add(pair)
            order.append(pair)
            if len(order) > window:
                seen.discard(order.popleft())
    return said


@settings(max_examples=300, deadline=None)
@given(data=st.data(), window=st.integers(1, 6))
def test_events_are_the_same_exactly_when_hash_and_index_are_equal(
    data: st.DataObject, window: int
) -> None:
    pool = data.draw(st.lists(st.tuples(_HASHES, _INDEXES), min_size=1, max_size=8))
    pairs = data.draw(st.lists(st.sampled_from(pool), max_size=40))
    deduper = Deduper(window=window)
    said = [deduper.is_duplicate(TRANSACTION, swap(tx, log_index=i)) for tx, i in pairs]
    assert said == _as_before(pairs, window)


def test_two_threads_checking_the_same_swaps_let_each_through_once() -> None:
    # Two threads decode at once when a reader thread takes its socket back from a busy
    # dispatcher thread, or with several connections: each swap must still pass once.
    deduper = Deduper()
    copies = [swap(f"0x{n:064x}", log_index=1) for n in range(2_000)]
    passed: list[list[events.Transaction]] = [[], []]
    start = threading.Barrier(2)

    def check(mine: list[events.Transaction]) -> None:
        for event in copies:
            start.wait()  # both threads on the same swap at the same moment
            if not deduper.is_duplicate(TRANSACTION, event):
                mine.append(event)
            # The other channel too, so the cached row changes under the other thread.
            deduper.is_duplicate(LIQUIDITY, swap_as_liquidity(event))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        threads = [threading.Thread(target=check, args=(mine,)) for mine in passed]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(switch)
    assert len(passed[0]) + len(passed[1]) == len(copies)
    assert deduper.dropped == len(copies) + len(copies)  # the second copy of each, both channels


def swap_as_liquidity(event: events.Transaction) -> events.LiquidityEvent:
    return events.LiquidityEvent(
        channel=LIQUIDITY.name, params={}, ts=0, tx_hash=event.tx_hash, log_index=event.log_index
    )
