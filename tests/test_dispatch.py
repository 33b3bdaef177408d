"""The dispatcher: plugin isolation, ordering, overflow policies, the iterator, closing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cmcsync import hookimpl
from cmcsync._dispatch import THREAD_NAME, Dispatcher
from cmcsync.config import DispatchConfig
from cmcsync.events import CryptoLatestPrice, Event, Kline
from cmcsync.exceptions import ClientClosedError
from cmcsync.plugins import make_plugin_manager
from cmcsync.testing._recorder import EventRecorder

PRICE = "market@crypto_latest_price"
KLINE = "onchain@kline"


class FakeClient:
    """What the hooks receive as ``client``."""


CLIENT = FakeClient()


def price(n: int, crypto_id: int = 1) -> CryptoLatestPrice:
    return CryptoLatestPrice(
        channel=PRICE, params={"crypto_ids": crypto_id}, ts=n, crypto_id=crypto_id, price=float(n)
    )


def kline(n: int) -> Kline:
    params = {"platform_id": 14, "interval": "1m", "address": "0xabc"}
    return Kline(channel=KLINE, params=params, ts=n)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait for a condition another thread makes true (a state with no event to wait on)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        tick.wait(0.002)


class Failing:
    """Raises in every data hook it implements."""

    def __init__(self, every: int = 1) -> None:
        self.calls = 0
        self.every = every

    @hookimpl
    def cmcsync_on_event(self, event: Event) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise RuntimeError(f"boom {event.ts}")


class Gate:
    """Blocks in its first ``cmcsync_on_event`` until released: a slow plugin."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl
    def cmcsync_on_event(self, event: Event) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10), "test never released the gate"


@pytest.fixture
def make() -> Iterator[Callable[..., Dispatcher]]:
    """Build started dispatchers over fresh plugin managers; all closed and joined after."""
    made: list[Dispatcher] = []

    def build(*plugins: object, start: bool = True, **config: Any) -> Dispatcher:
        pm = make_plugin_manager(autoload=False, plugins=plugins)
        dispatcher = Dispatcher(pm, CLIENT, DispatchConfig(**config))
        made.append(dispatcher)
        if start:
            dispatcher.start()
        return dispatcher

    yield build
    for dispatcher in made:
        dispatcher.close(2.0)
    for dispatcher in made:
        assert not dispatcher.stats()["running"]
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture
def gate(make: Callable[..., Dispatcher]) -> Iterator[Gate]:
    """A slow plugin, released at the latest when the test ends (before the dispatchers close)."""
    plugin = Gate()
    yield plugin
    plugin.release.set()


def names(recorder: EventRecorder) -> list[str]:
    return [hook for hook, _ in recorder.calls]


# --- isolation -------------------------------------------------------------------------------


@pytest.mark.parametrize("failing_first", [True, False])
def test_a_plugin_raising_on_every_event_does_not_starve_another(
    make: Callable[..., Dispatcher], failing_first: bool
) -> None:
    recorder, failing = EventRecorder(), Failing()
    plugins = (failing, recorder) if failing_first else (recorder, failing)
    dispatcher = make(*plugins, max_plugin_failures=None)
    sent = [price(n) for n in range(50)]
    for start in range(0, 50, 7):
        dispatcher.submit(sent[start : start + 7])
    dispatcher.close(5.0)
    assert recorder.events == sent
    assert failing.calls == 50
    stats = dispatcher.stats()
    assert stats["plugin_errors"] == {"Failing": 50}
    assert stats["disabled_plugins"] == []
    assert stats["delivered"] == 50


def test_a_failure_is_logged_with_names_and_told_to_the_plugin_error_hook(
    make: Callable[..., Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder, Failing())
    with caplog.at_level(logging.ERROR, logger="cmcsync.dispatch"):
        dispatcher.submit([price(7)])
        [call] = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_plugin_error"))
    assert call["client"] is CLIENT
    assert (call["plugin_name"], call["hook_name"], call["disabled"]) == (
        "Failing",
        "cmcsync_on_event",
        False,
    )
    assert isinstance(call["error"], RuntimeError) and str(call["error"]) == "boom 7"
    [record] = [r for r in caplog.records if r.name == "cmcsync.dispatch"]
    assert "'Failing'" in record.getMessage() and "cmcsync_on_event" in record.getMessage()
    assert record.exc_info is not None


def test_a_plugin_failing_n_times_in_a_row_is_switched_off(make: Callable[..., Dispatcher]) -> None:
    recorder, failing = EventRecorder(), Failing()
    dispatcher = make(recorder, failing, max_plugin_failures=3)
    dispatcher.submit([price(n) for n in range(10)])
    dispatcher.close(5.0)
    assert failing.calls == 3
    assert len(recorder.events) == 10
    told = recorder.hook_calls("cmcsync_on_plugin_error")
    assert [c["disabled"] for c in told] == [False, False, True]
    assert dispatcher.stats()["disabled_plugins"] == ["Failing"]
    assert dispatcher.stats()["plugin_errors"] == {"Failing": 3}


def test_failures_that_are_not_in_a_row_never_switch_a_plugin_off(
    make: Callable[..., Dispatcher],
) -> None:
    failing = Failing(every=2)  # fails on every other event: never twice in a row
    dispatcher = make(failing, max_plugin_failures=2)
    dispatcher.submit([price(n) for n in range(20)])
    dispatcher.close(5.0)
    assert failing.calls == 20
    assert dispatcher.stats()["disabled_plugins"] == []


def test_a_raising_plugin_error_hook_is_only_logged(
    make: Callable[..., Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    class BadReporter:
        calls = 0

        @hookimpl
        def cmcsync_on_plugin_error(self, plugin_name: str) -> None:
            BadReporter.calls += 1
            raise ValueError("reporter broke")

    recorder = EventRecorder()
    dispatcher = make(recorder, BadReporter(), Failing(), max_plugin_failures=None)
    dispatcher.submit([price(1), price(2)])
    dispatcher.close(5.0)
    assert BadReporter.calls == 2  # once per failure: never recursed
    assert len(recorder.hook_calls("cmcsync_on_plugin_error")) == 2
    assert dispatcher.stats()["plugin_errors"] == {"Failing": 2}
    assert any("reporter broke" in r.getMessage() or r.exc_info for r in caplog.records)


# --- order ------------------------------------------------------------------------------------


def test_each_plugin_sees_events_in_arrival_order_then_its_channel_hook(
    make: Callable[..., Dispatcher],
) -> None:
    first, second = EventRecorder(), EventRecorder()
    dispatcher = make(first, second)
    sent: list[Event] = []
    for n in range(0, 300, 3):
        batch = [price(n), kline(n + 1), price(n + 2, crypto_id=2)]
        sent.extend(batch)
        dispatcher.submit(batch)
    dispatcher.close(5.0)
    for recorder in (first, second):
        assert recorder.events == sent
        expected = []
        for event in sent:
            short = "crypto_latest_price" if event.channel == PRICE else "kline"
            expected += [("cmcsync_on_event", event), (f"cmcsync_on_{short}", event)]
        assert [(hook, kwargs["event"]) for hook, kwargs in recorder.calls] == expected


def test_implementations_get_only_the_arguments_they_declare(
    make: Callable[..., Dispatcher],
) -> None:
    got: list[tuple[str, object]] = []

    class Partial:
        @hookimpl
        def cmcsync_on_event(self, client: object) -> None:
            got.append(("client", client))

        @hookimpl
        def cmcsync_on_crypto_latest_price(self) -> None:
            got.append(("nothing", None))

        @hookimpl
        def cmcsync_on_connect(self, reconnect: bool) -> None:
            got.append(("reconnect", reconnect))

    dispatcher = make(Partial())
    dispatcher.submit([price(1)])
    dispatcher.notify("cmcsync_on_connect", url="ws://127.0.0.1:1/v1", reconnect=True)
    dispatcher.close(5.0)
    assert got == [("client", CLIENT), ("nothing", None), ("reconnect", True)]


def test_lifecycle_calls_are_delivered_in_order_with_the_events(
    make: Callable[..., Dispatcher],
) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder)
    dispatcher.submit([price(0), price(1)])
    dispatcher.notify("cmcsync_on_connect", url="ws://127.0.0.1:1/v1", reconnect=False)
    dispatcher.submit([price(2)])
    dispatcher.notify(
        "cmcsync_on_disconnect", client=CLIENT, code=1006, reason="lost", will_reconnect=True
    )
    dispatcher.close(5.0)
    data = [(h, kw["event"].ts) for h, kw in recorder.calls if h == "cmcsync_on_event"]
    assert data == [("cmcsync_on_event", 0), ("cmcsync_on_event", 1), ("cmcsync_on_event", 2)]
    order = [
        h if h != "cmcsync_on_event" else kw["event"].ts
        for h, kw in recorder.calls
        if h != "cmcsync_on_crypto_latest_price"
    ]
    assert order == [0, 1, "cmcsync_on_connect", 2, "cmcsync_on_disconnect"]
    assert recorder.hook_calls("cmcsync_on_connect")[0] == {
        "client": CLIENT,
        "url": "ws://127.0.0.1:1/v1",
        "reconnect": False,
    }


def test_notify_refuses_data_hooks_unknown_hooks_and_wrong_arguments(
    make: Callable[..., Dispatcher],
) -> None:
    dispatcher = make(start=False)
    with pytest.raises(ValueError, match="not a lifecycle hook"):
        dispatcher.notify("cmcsync_on_kline", event=kline(1))
    with pytest.raises(ValueError, match="not a lifecycle hook"):
        dispatcher.notify("cmcsync_on_konnect", url="x", reconnect=False)
    with pytest.raises(TypeError, match="url, reconnect"):
        dispatcher.notify("cmcsync_on_connect", url="x")


def test_a_plugin_registered_while_running_gets_the_next_events(
    make: Callable[..., Dispatcher],
) -> None:
    early = EventRecorder()
    dispatcher = make(early)
    dispatcher.submit([price(1)])
    early.wait_for_events(1)
    late = EventRecorder()
    dispatcher._pm.register(late)
    dispatcher.submit([price(2)])
    dispatcher.close(5.0)
    assert [e.ts for e in late.events] == [2]
    assert [e.ts for e in early.events] == [1, 2]


# --- overflow ---------------------------------------------------------------------------------


def test_block_is_lossless_under_a_slow_plugin(make: Callable[..., Dispatcher], gate: Gate) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder, queue_size=8, batch_size=4)
    sent = [price(n) for n in range(60)]

    def submit_all() -> None:
        for i in range(0, 60, 5):
            dispatcher.submit(sent[i : i + 5])

    submitter = threading.Thread(target=submit_all, name="test-submitter")
    submitter.start()
    assert gate.entered.wait(5)
    wait_until(lambda: dispatcher.blocked and dispatcher.stats()["queue_depth"] == 8)
    assert submitter.is_alive()  # waiting for room, not dropping
    gate.release.set()
    submitter.join(10)
    assert not submitter.is_alive()
    dispatcher.close(5.0)
    assert recorder.events == sent
    stats = dispatcher.stats()
    assert (stats["delivered"], stats["dropped"], stats["undelivered"]) == (60, 0, 0)
    assert stats["blocked_submits"] >= 1 and stats["max_queue_depth"] == 8
    assert not dispatcher.blocked


def test_drop_oldest_drops_and_counts_events_but_keeps_lifecycle_calls(
    make: Callable[..., Dispatcher],
    gate: Gate,
) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder, queue_size=5, overflow="drop_oldest")
    dispatcher.submit([price(0)])
    assert gate.entered.wait(5)  # price(0) is being delivered; the queue is empty
    dispatcher.submit([price(n) for n in range(1, 4)])
    dispatcher.notify("cmcsync_on_connect", url="ws://127.0.0.1:1/v1", reconnect=True)
    dispatcher.submit([price(n) for n in range(4, 13)])  # returns at once: nothing waits
    assert not dispatcher.blocked
    assert dispatcher.stats()["dropped"] == 7
    gate.release.set()
    dispatcher.close(5.0)
    assert [e.ts for e in recorder.events] == [0, 8, 9, 10, 11, 12]
    assert names(recorder).count("cmcsync_on_connect") == 1
    assert dispatcher.stats()["delivered"] == 6


def test_conflate_keeps_the_latest_event_per_price_subscription(
    make: Callable[..., Dispatcher], gate: Gate
) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder, queue_size=4, overflow="conflate")
    dispatcher.submit([kline(0)])
    assert gate.entered.wait(5)
    dispatcher.submit([price(1, 1), price(2, 2), price(3, 1), price(4, 2), price(5, 1)])
    assert dispatcher.stats()["queue_depth"] == 2  # one per subscription
    dispatcher.submit([kline(6), kline(7)])  # the queue is now full
    dispatcher.submit([price(8, 2)])  # conflates: never waits for room
    blocked_kline = threading.Thread(
        target=dispatcher.submit, args=([kline(9)],), name="test-submitter"
    )
    blocked_kline.start()
    wait_until(lambda: dispatcher.blocked)  # other channels wait, as under "block"
    gate.release.set()
    blocked_kline.join(5)
    dispatcher.close(5.0)
    delivered = [(e.channel == PRICE, e.ts) for e in recorder.events]
    assert delivered == [(False, 0), (True, 5), (True, 8), (False, 6), (False, 7), (False, 9)]
    stats = dispatcher.stats()
    assert (stats["conflated"], stats["dropped"], stats["undelivered"]) == (4, 0, 0)


def test_a_slow_consumer_is_reported_before_the_queue_overflows(
    make: Callable[..., Dispatcher], gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder, queue_size=10, slow_fraction=0.5)
    dispatcher.submit([price(0)])
    assert gate.entered.wait(5)
    with caplog.at_level(logging.WARNING, logger="cmcsync.dispatch"):
        dispatcher.submit([price(n) for n in range(1, 5)])
        assert dispatcher.stats()["slow_consumer_reports"] == 0
        dispatcher.submit([price(5)])  # 5 of 10: reported, nothing lost, nobody waits
        dispatcher.submit([price(6), price(7)])  # still full enough: not reported twice
    stats = dispatcher.stats()
    assert (stats["slow_consumer_reports"], stats["dropped"], stats["blocked_submits"]) == (1, 0, 0)
    assert any("falling behind" in r.getMessage() for r in caplog.records)
    gate.release.set()
    [call] = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_slow_consumer"))
    assert (call["depth"], call["capacity"], call["client"]) == (5, 10, CLIENT)
    # Ahead of the backlog: the plugins hear of it before the queued events (price(0) was
    # being delivered when it was noticed).
    recorder.wait_for_events(8)
    order = [kw["event"].ts if "event" in kw else hook for hook, kw in recorder.calls]
    assert order[: 2 + 1 + 2] == [0, 0, "cmcsync_on_slow_consumer", 1, 1]
    # Drained below half, it may be reported again.
    gate.entered.clear()
    dispatcher.submit([price(n) for n in range(8, 14)])
    wait_until(lambda: dispatcher.stats()["slow_consumer_reports"] == 2)


def test_a_hook_submitting_into_a_full_queue_does_not_wait_for_itself(
    make: Callable[..., Dispatcher],
) -> None:
    recorder = EventRecorder()
    dispatcher: Dispatcher

    class Replayer:
        @hookimpl
        def cmcsync_on_connect(self) -> None:
            dispatcher.submit([price(n) for n in range(10)])  # five times the capacity

    dispatcher = make(Replayer(), recorder, queue_size=2)
    dispatcher.notify("cmcsync_on_connect", url="ws://127.0.0.1:1/v1", reconnect=False)
    assert [e.ts for e in recorder.wait_for_events(10)] == list(range(10))
    assert dispatcher.stats()["blocked_submits"] == 0


# --- the events iterator ----------------------------------------------------------------------


def test_iterate_yields_delivered_events_and_stops_after_a_quiet_timeout(
    make: Callable[..., Dispatcher],
) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder)
    dispatcher.enable_iterator()
    sent = [price(n) for n in range(5)]
    dispatcher.submit(sent)
    got = []
    began = time.monotonic()
    for event in dispatcher.iterate(timeout=0.3):
        assert event in recorder.events  # the plugins had it first
        got.append(event)
    assert got == sent
    assert time.monotonic() - began >= 0.3


def test_iterate_ends_when_the_dispatcher_closes(make: Callable[..., Dispatcher]) -> None:
    dispatcher = make()
    got: list[Event] = []
    ended = threading.Event()

    def read() -> None:
        got.extend(dispatcher.iterate(timeout=None))
        ended.set()

    reader = threading.Thread(target=read, name="test-reader")
    reader.start()
    dispatcher.submit([price(1)])
    wait_until(lambda: got)
    dispatcher.close(5.0)
    assert ended.wait(5)
    reader.join(5)
    assert [e.ts for e in got] == [1]


def test_finish_with_an_error_raises_it_after_the_buffered_events(
    make: Callable[..., Dispatcher],
) -> None:
    dispatcher = make()
    dispatcher.enable_iterator()
    dispatcher.submit([price(1), price(2)])
    wait_until(lambda: dispatcher.stats()["iterator_depth"] == 2)
    error = RuntimeError("key rejected")
    dispatcher.finish(error)
    iterator = dispatcher.iterate(timeout=5)
    assert [next(iterator).ts, next(iterator).ts] == [1, 2]
    with pytest.raises(RuntimeError) as raised:
        next(iterator)
    assert raised.value is error


def test_finish_without_error_ends_the_iterator(make: Callable[..., Dispatcher]) -> None:
    dispatcher = make()
    dispatcher.finish(None)
    assert list(dispatcher.iterate(timeout=None)) == []


def test_an_unread_iterator_drops_its_oldest_events_and_warns_once(
    make: Callable[..., Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder, queue_size=5)
    dispatcher.enable_iterator()
    with caplog.at_level(logging.WARNING, logger="cmcsync.dispatch"):
        for n in range(12):
            dispatcher.submit([price(n)])
        dispatcher.close(5.0)
    assert len(recorder.events) == 12  # plugins lose nothing
    assert dispatcher.stats()["iterator_dropped"] == 7
    assert [e.ts for e in dispatcher.iterate(timeout=0)] == [7, 8, 9, 10, 11]
    assert sum("not read fast enough" in r.getMessage() for r in caplog.records) == 1


def test_events_before_the_iterator_is_enabled_are_not_kept(
    make: Callable[..., Dispatcher],
) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder)
    dispatcher.submit([price(1)])
    recorder.wait_for_events(1)
    dispatcher.enable_iterator()
    dispatcher.submit([price(2)])
    dispatcher.close(5.0)
    assert [e.ts for e in dispatcher.iterate(timeout=0)] == [2]


# --- closing ----------------------------------------------------------------------------------


def test_close_delivers_what_is_queued_then_joins(
    make: Callable[..., Dispatcher], gate: Gate
) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder)
    dispatcher.submit([price(n) for n in range(100)])
    assert gate.entered.wait(5)
    threading.Timer(0.05, gate.release.set).start()
    dispatcher.close(5.0)  # waits for the gate, then for the other 99
    assert len(recorder.events) == 100
    stats = dispatcher.stats()
    assert (stats["running"], stats["undelivered"]) == (False, 0)


def test_close_is_idempotent_and_refuses_what_comes_after(make: Callable[..., Dispatcher]) -> None:
    recorder = EventRecorder()
    dispatcher = make(recorder)
    dispatcher.close(5.0)
    dispatcher.close(5.0)
    dispatcher.submit([price(1), price(2)])  # returns at once, counted
    dispatcher.notify("cmcsync_on_connect", url="ws://127.0.0.1:1/v1", reconnect=False)
    assert dispatcher.stats()["undelivered"] == 2
    assert recorder.calls == []
    with pytest.raises(ClientClosedError):
        dispatcher.start()


def test_close_counts_what_it_could_not_deliver_in_time(
    make: Callable[..., Dispatcher], gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EventRecorder()
    dispatcher = make(gate, recorder)
    dispatcher.submit([price(n) for n in range(10)])
    assert gate.entered.wait(5)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cmcsync.dispatch"):
        dispatcher.close(0.2)  # the gate is still shut: the thread is stuck in the plugin
    assert 0.2 <= time.monotonic() - began < 2.0
    assert any("still inside a plugin" in r.getMessage() for r in caplog.records)
    gate.release.set()
    wait_until(lambda: not dispatcher.stats()["running"])
    assert dispatcher.stats()["undelivered"] == 9
    assert len(recorder.events) == 1


def test_close_releases_a_blocked_submitter_and_counts_its_events(
    make: Callable[..., Dispatcher], gate: Gate
) -> None:
    dispatcher = make(gate, queue_size=2)
    dispatcher.submit([price(0)])
    assert gate.entered.wait(5)
    submitter = threading.Thread(
        target=dispatcher.submit, args=([price(n) for n in range(1, 6)],), name="test-submitter"
    )
    submitter.start()
    wait_until(lambda: dispatcher.blocked)
    closer = threading.Thread(target=dispatcher.close, args=(0.1,), name="test-closer")
    closer.start()
    submitter.join(5)
    assert not submitter.is_alive()
    closer.join(5)  # returns once its 0.1 s are up, the thread still stuck in the plugin
    gate.release.set()
    wait_until(lambda: not dispatcher.stats()["running"])
    # 2 were queued when close() came, 3 never made it in; none of the 5 was delivered in time.
    assert dispatcher.stats()["undelivered"] == 5


def test_a_plugin_may_close_the_dispatcher_from_a_hook(make: Callable[..., Dispatcher]) -> None:
    recorder = EventRecorder()
    dispatcher: Dispatcher

    class Closer:
        @hookimpl
        def cmcsync_on_event(self, event: Event) -> None:
            if event.ts == 3:
                dispatcher.close(5.0)  # must not join its own thread

    dispatcher = make(Closer(), recorder)
    dispatcher.submit([price(n) for n in range(10)])
    wait_until(lambda: not dispatcher.stats()["running"])
    assert [e.ts for e in recorder.events] == list(range(10))  # the queue was still drained
    dispatcher.close(5.0)


def test_closing_a_dispatcher_never_started_counts_its_queue(
    make: Callable[..., Dispatcher],
) -> None:
    dispatcher = make(start=False)
    dispatcher.submit([price(1), price(2)])
    dispatcher.close(1.0)
    assert dispatcher.stats()["undelivered"] == 2
    assert list(dispatcher.iterate(timeout=None)) == []


def test_wrappers_registered_behind_validation_are_ignored_not_fatal(
    make: Callable[..., Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    import pluggy

    class Wrapper:
        @hookimpl(wrapper=True)
        def cmcsync_on_event(self, event: Event) -> Iterator[None]:
            yield

    recorder = EventRecorder()
    dispatcher = make(recorder)
    with caplog.at_level(logging.WARNING, logger="cmcsync.dispatch"):
        pluggy.PluginManager.register(dispatcher._pm, Wrapper(), "wrapper")
        dispatcher._pm.generation += 1  # type: ignore[attr-defined]
        dispatcher.submit([price(1)])
        dispatcher.close(5.0)
    assert len(recorder.events) == 1
    assert any("hook wrapper" in r.getMessage() for r in caplog.records)


def test_close_after_the_dispatcher_thread_failed_returns_and_reports_the_failure(
    make: Callable[..., Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = threading.Event()
    leave = threading.Event()
    original = Dispatcher._stopped

    def broken(self: Dispatcher) -> None:
        raise RuntimeError("a bug in the dispatcher thread")

    def stopped_then_linger(self: Dispatcher) -> None:
        original(self)
        stopped.set()
        leave.wait(10)  # the thread has given up its queue but has not ended yet

    monkeypatch.setattr(Dispatcher, "_run_hosting", broken)
    monkeypatch.setattr(Dispatcher, "_stopped", stopped_then_linger)
    dispatcher = make()
    assert stopped.wait(5)
    dispatcher.submit([price(1)])  # after the thread gave up: counted, not lost silently
    threading.Timer(0.2, leave.set).start()
    dispatcher.close(1.0)  # joins the lingering thread within its timeout
    assert not dispatcher.stats()["running"]
    assert dispatcher.stats()["undelivered"] == 1
    with pytest.raises(RuntimeError, match="a bug in the dispatcher thread"):
        list(dispatcher.iterate(timeout=1.0))
