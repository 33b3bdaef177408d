"""cmcsync.storage: the buffered writer on a fake store that fails, hangs and refuses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import pytest

from cmcsync import Backoff
from cmcsync.storage import BufferedWriter, PartlyWritten, WriterError
from cmcsync.testing import wait_until

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
