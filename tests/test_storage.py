"""cmcsync.storage: the buffered writer on a fake store that fails, hangs and refuses, and
the JSON its values are written as."""

from __future__ import annotations

import enum
import json
import logging
import math
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmcsync import Backoff
from cmcsync.storage import BufferedWriter, PartlyWritten, WriterError, dumps, loads
from cmcsync.testing import Simulator, stream_feed, wait_until

FAST = Backoff(base=0.005, cap=0.01)


class Down(ConnectionError):
    """The fake store is unreachable."""


class Refused(ValueError):
    """The fake store refuses an item for good."""


class FakeStore:
    """A store whose transactions are lists; it fails, hangs and refuses as told."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.committed_ids: set[int] = set()
        self.down = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()
        self.refuse: set[int] = set()
        self.partly: set[int] = set()
        self.lose_reply_once = False
        self.batches: list[list[int]] = []

    def describe(self) -> str:
        return "the fake store"

    def write(self, batch: Sequence[int], batch_id: int) -> None:
        self.writing.set()
        self.gate.wait(10)
        if self.down.is_set():
            raise Down("connection refused")
        bad = [n for n, item in enumerate(batch) if item in self.partly]
        if bad:
            self.rows.extend(item for item in batch if item not in self.partly)
            self.committed_ids.add(batch_id)
            raise PartlyWritten(bad, Refused("WRONGTYPE"))
        if any(item in self.refuse for item in batch):
            raise Refused(f"cannot hold {sorted(set(batch) & self.refuse)}")
        self.rows.extend(batch)
        self.batches.append(list(batch))
        self.committed_ids.add(batch_id)
        if self.lose_reply_once:
            self.lose_reply_once = False
            raise Down("connection lost while the commit was in flight")

    def committed(self, batch_id: int) -> bool:
        if self.down.is_set():
            raise Down("connection refused")
        return batch_id in self.committed_ids

    def transient(self, error: BaseException) -> bool:
        return isinstance(error, Down)

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def make(store: FakeStore) -> Iterator[type[BufferedWriter[int]]]:
    writers: list[BufferedWriter[int]] = []

    def build(capacity: int = 1000, batch_size: int = 100) -> BufferedWriter[int]:
        writer = BufferedWriter(
            store,
            thread_name="cmcsync-test-writer",
            capacity=capacity,
            batch_size=batch_size,
            backoff=FAST,
            logger=logging.getLogger("cmcsync_sql.test"),
        )
        writers.append(writer)
        return writer

    yield build  # type: ignore[misc]
    store.gate.set()
    for writer in writers:
        writer.stop(1.0)


def balanced(writer: BufferedWriter[int]) -> bool:
    stats = writer.stats()
    lost = stats["dropped"] + stats["rejected"] + stats["unwritten"]
    held = stats["buffered"] + stats["in_flight"]
    return bool(stats["accepted"] == stats["written"] + lost + held)


def idle(writer: BufferedWriter[int]) -> bool:
    stats = writer.stats()
    return stats["buffered"] == stats["in_flight"] == 0


def test_items_are_written_in_order_in_batches(make, store: FakeStore) -> None:
    writer = make(batch_size=10)
    store.gate.clear()
    writer.put(-1)
    store.writing.wait(5)  # the first batch holds the writer while the rest piles up
    for n in range(95):
        writer.put(n)
    store.gate.set()
    wait_until(lambda: idle(writer))
    assert store.rows == [-1, *range(95)]
    assert [len(batch) for batch in store.batches] == [1] + [10] * 9 + [5]
    assert writer.stats()["batches"] == 11 and balanced(writer)
    assert writer.take_reports() == []


def test_an_outage_holds_items_and_retries_until_the_store_is_back(make, store: FakeStore) -> None:
    writer = make()
    store.down.set()
    for n in range(50):
        writer.put(n)
    wait_until(lambda: writer.stats()["failed_attempts"] >= 3)
    assert writer.stats()["state"] == "retrying" and store.rows == []
    assert balanced(writer)
    store.down.clear()
    wait_until(lambda: idle(writer))
    assert store.rows == list(range(50))
    [report] = writer.take_reports()
    assert report.kind == "unavailable" and "fake store" in str(report)
    assert writer.stats()["outages"] == 1 and writer.stats()["failures"] == 0


def test_a_batch_whose_commit_went_through_unseen_is_not_written_twice(
    make, store: FakeStore
) -> None:
    writer = make()
    store.lose_reply_once = True
    for n in range(20):
        writer.put(n)
    wait_until(lambda: idle(writer))
    assert store.rows == list(range(20))
    assert writer.stats()["written"] == 20 and writer.stats()["failed_attempts"] == 1


def test_an_item_the_store_refuses_costs_only_itself(make, store: FakeStore) -> None:
    writer = make(batch_size=50)
    store.refuse = {7}
    store.gate.clear()
    writer.put(-1)
    store.writing.wait(5)
    for n in range(20):
        writer.put(n)
    store.gate.set()
    wait_until(lambda: idle(writer))
    assert store.rows == [-1, *(n for n in range(20) if n != 7)]
    [report] = writer.take_reports()
    assert report.kind == "rejected" and report.count == 1 and "[7]" in str(report)
    assert isinstance(report.__cause__, Refused)
    assert writer.stats()["rejected"] == 1 and balanced(writer)


def test_items_refused_inside_a_committed_batch_are_not_sent_again(make, store: FakeStore) -> None:
    writer = make()
    store.partly = {3, 4}
    for n in range(10):
        writer.put(n)
    wait_until(lambda: idle(writer))
    assert store.rows == [0, 1, 2, 5, 6, 7, 8, 9]
    reports = writer.take_reports()  # one per batch the writer happened to take
    assert {report.kind for report in reports} == {"rejected"}
    assert sum(report.count for report in reports) == 2
    assert writer.stats()["rejected"] == 2 and balanced(writer)


def test_a_full_buffer_drops_the_oldest_and_says_how_many(make, store: FakeStore) -> None:
    writer = make(capacity=5)
    store.gate.clear()
    writer.put(0)
    store.writing.wait(5)  # 0 is in flight; 1..12 compete for 5 places
    for n in range(1, 13):
        writer.put(n)
    assert writer.stats()["dropped"] == 7 and balanced(writer)
    store.gate.set()
    wait_until(lambda: idle(writer))
    assert store.rows == [0, 8, 9, 10, 11, 12]
    overflow, dropped = writer.take_reports()
    assert overflow.kind == "overflow"
    assert (dropped.kind, dropped.count) == ("dropped", 7)


def test_stopping_while_the_store_is_down_counts_what_is_left(make, store: FakeStore) -> None:
    writer = make()
    store.down.set()
    for n in range(30):
        writer.put(n)
    wait_until(lambda: writer.stats()["failed_attempts"] > 0)
    assert writer.stop(0.2)
    stats = writer.stats()
    assert stats["state"] == "stopped"
    assert (stats["unwritten"], stats["written"]) == (30, 0) and balanced(writer)
    kinds = [report.kind for report in writer.take_reports()]
    assert kinds == ["unavailable", "unwritten"]


def test_stopping_writes_what_is_held_first(make, store: FakeStore) -> None:
    writer = make(batch_size=7)
    for n in range(100):
        writer.put(n)
    assert writer.stop(5.0)
    assert store.rows == list(range(100)) and writer.stats()["state"] == "stopped"


def test_a_stopped_writer_starts_again_with_the_next_item(make, store: FakeStore) -> None:
    writer = make()
    writer.put(1)
    writer.stop(1.0)
    assert not [t for t in threading.enumerate() if t.name == "cmcsync-test-writer"]
    writer.put(2)
    wait_until(lambda: store.rows == [1, 2])
    assert writer.stats()["state"] == "idle"


def test_reports_combine_into_one_error() -> None:
    one = WriterError("one", kind="overflow", count=1)
    assert WriterError.combine([one]) is one
    both = WriterError.combine([one, WriterError("two", kind="dropped", count=5)])
    assert (both.kind, both.count, str(both)) == ("several", 6, "one; two")
    assert [report.kind for report in both.reports] == ["overflow", "dropped"]


# --- dumps: any depth, the output of the recursive writer it replaced -------------------------


def _recursive_dumps(value: Any) -> str:
    """dumps as it was when it recursed: the reference for the walk."""
    parts: list[str] = []
    _recursive_write(value, parts.append)
    return "".join(parts)


def _recursive_write(value: Any, out: Callable[[str], object]) -> None:
    kind = type(value)
    if value is None:
        out("null")
    elif value is True or value is False:
        out("true" if value else "false")
    elif kind is int:
        out(str(value))
    elif kind is float:
        out(json.dumps(value))
    elif kind is Decimal:
        if not value.is_finite():
            out(json.dumps(float(value)))
        else:
            text = str(value)
            out(text if ("." in text or "E" in text) else text + "E0")
    elif kind is str:
        out(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Mapping):
        out("{")
        for n, (key, item) in enumerate(value.items()):
            if n:
                out(",")
            out(json.dumps(str(key), ensure_ascii=False))
            out(":")
            _recursive_write(item, out)
        out("}")
    elif isinstance(value, (list, tuple)):
        out("[")
        for n, item in enumerate(value):
            if n:
                out(",")
            _recursive_write(item, out)
        out("]")
    elif attrs.has(kind):
        fields = attrs.fields(kind)
        _recursive_write({field.name: getattr(value, field.name) for field in fields}, out)
    elif isinstance(value, int):
        out(str(int(value)))
    else:
        raise TypeError(f"cannot write {kind.__name__} {value!r} as JSON")


def assert_same_as_recursive(value: Any) -> None:
    """dumps writes ``value`` as the recursive writer did, or raises the same error."""
    expected: str | Exception
    try:
        expected = _recursive_dumps(value)
    except (TypeError, ValueError) as exc:  # no JSON form (a set, a signaling NaN...)
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=f"^{re.escape(str(expected))}$"):
            dumps(value)
    else:
        assert dumps(value) == expected


@pytest.mark.parametrize("decimal", [False, True], ids=["float", "decimal"])
def test_dumps_of_the_simulator_feed_is_unchanged(sim: Simulator, decimal: bool) -> None:
    recorder = stream_feed(sim, decimal=decimal, per_channel=3)
    with_windows = with_extra = 0
    for event in recorder.events:
        # What the storage plugins write: params, extra, windows; and the event as a whole.
        assert_same_as_recursive(event.params)
        assert_same_as_recursive(event.extra)
        windows = getattr(event, "windows", None)
        if windows is not None:
            assert_same_as_recursive(windows)
            with_windows += 1
        with_extra += bool(event.extra)
        assert_same_as_recursive(event)
    assert with_windows and with_extra, "the feed has windows and extra keys"


class _Side(enum.IntEnum):
    BUY = 1


class _Label(str):
    pass


@attrs.frozen
class _Window:
    ut: int
    extra: Mapping[str, Any] = attrs.field(factory=dict)


def test_dumps_of_odd_values_is_unchanged() -> None:
    shared = [Decimal("2.50"), (1, 2)]
    odd = {
        "decimals": [Decimal("5"), Decimal("1.10"), Decimal("-0E-8"), Decimal("1E+3")],
        "not finite": [Decimal("NaN"), Decimal("-Infinity"), math.inf, math.nan, -0.0],
        "ints": [10**30, -1, _Side.BUY, True, False, None],
        "text": ["é", "\u2028", '"quoted"', "\\", "\x00", "🙂"],
        "tuple": (1, (2.5, [None, True]), ()),
        "keys": {1: "int", None: "none", 2.5: "float", _Label("label"): "str subclass"},
        "mappings": OrderedDict(a=MappingProxyType({"b": [{}]})),
        "windows": {"5m": _Window(ut=2, extra={"zz": [Decimal("1")]}), "1h": _Window(ut=3)},
        "twice": [shared, {"again": shared}],
        "empty": [[], {}, [[[]]], ""],
    }
    assert_same_as_recursive(odd)
    for value in [None, 1, "text", Decimal("0.10"), [], {}]:
        assert_same_as_recursive(value)
    for value in [{"x": object()}, [b"raw"], [_Label("label")], {1, 2}, [Decimal("sNaN")]]:
        assert_same_as_recursive(value)  # the same error


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True)
    | st.text(max_size=6)
    | st.sampled_from([_Side.BUY, _Label("label"), b"raw"])
)
_trees = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers() | st.none(), inner, max_size=4)
        | st.builds(_Window, ut=st.integers(), extra=st.dictionaries(st.text(max_size=3), inner))
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=_trees)
def test_dumps_of_any_value_is_unchanged(value: Any) -> None:
    assert_same_as_recursive(value)


def test_dumps_writes_values_at_any_depth() -> None:
    depth = 20 * sys.getrecursionlimit()
    value: Any = Decimal("0.10")
    for _ in range(depth // 2):
        value = [{"k": value}]
    assert dumps(value) == '[{"k":' * (depth // 2) + "0.10" + "}]" * (depth // 2)
    shallow = {"k": [[{"k": Decimal("1.5")}]]}
    assert loads(dumps(shallow), decimal=True) == shallow


def test_dumps_refuses_a_container_that_holds_itself() -> None:
    loop: list[Any] = [1]
    loop.append({"back": loop})
    with pytest.raises(ValueError, match="holds itself"):
        dumps({"extra": loop})
    # The same container twice, once inside a sibling, is no loop.
    once = [1]
    assert dumps([once, {"again": once}]) == '[[1],{"again":[1]}]'
