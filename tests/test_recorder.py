"""EventRecorder: every hook implemented, thread-safe recording, waits with clear timeouts."""

from __future__ import annotations

import threading

import pytest

from cmcsync import hookspecs
from cmcsync.events import CryptoLatestPrice, Kline
from cmcsync.plugins import make_plugin_manager, plugin_info
from cmcsync.testing import EventRecorder

PRICE = "market@crypto_latest_price"
KLINE = "onchain@kline"
CLIENT = object()


def price(n: int) -> CryptoLatestPrice:
    return CryptoLatestPrice(
        channel=PRICE, params={"crypto_ids": 1}, ts=n, crypto_id=1, price=float(n)
    )


def kline(n: int) -> Kline:
    return Kline(channel=KLINE, params={"platform_id": 1, "interval": "1m", "address": "a"}, ts=n)


def test_it_implements_every_hook_and_registers_cleanly() -> None:
    specs = {name for name in dir(hookspecs) if name.startswith("cmcsync_")}
    [info] = plugin_info(make_plugin_manager(autoload=False, plugins=[EventRecorder()]))
    assert set(info.hooks) == specs


def test_events_and_calls_are_recorded_in_order_and_filtered() -> None:
    recorder = EventRecorder()
    recorder.cmcsync_on_event(price(1), CLIENT)
    recorder.cmcsync_on_crypto_latest_price(price(1), CLIENT)
    recorder.cmcsync_on_connect(CLIENT, "ws://127.0.0.1:1/v1", True)
    recorder.cmcsync_on_event(kline(2), CLIENT)
    assert [e.ts for e in recorder.events] == [1, 2]
    assert [hook for hook, _ in recorder.calls] == [
        "cmcsync_on_event",
        "cmcsync_on_crypto_latest_price",
        "cmcsync_on_connect",
        "cmcsync_on_event",
    ]
    assert [e.ts for e in recorder.by_channel(KLINE)] == [2]
    assert recorder.hook_calls("cmcsync_on_connect") == [
        {"client": CLIENT, "url": "ws://127.0.0.1:1/v1", "reconnect": True}
    ]
    recorder.clear()
    assert (recorder.events, recorder.calls) == ([], [])


def test_recording_from_many_threads_loses_nothing() -> None:
    recorder = EventRecorder()

    def feed() -> None:
        for n in range(500):
            recorder.cmcsync_on_event(price(n), CLIENT)

    threads = [threading.Thread(target=feed, name=f"test-feed-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    assert len(recorder.wait_for_events(2000, timeout=10)) == 2000
    for thread in threads:
        thread.join()
    assert len(recorder.calls) == 2000


def test_wait_for_events_wakes_when_they_arrive_and_filters_by_channel() -> None:
    recorder = EventRecorder()
    feeder = threading.Timer(
        0.05, lambda: [recorder.cmcsync_on_event(e, CLIENT) for e in (price(1), kline(2), kline(3))]
    )
    feeder.start()
    got = recorder.wait_for_events(2, timeout=5, channel=KLINE)
    feeder.join()
    assert [e.ts for e in got] == [2, 3]
    assert [e.ts for e in recorder.wait_for_events(1)] == [1]  # the first n, not the last


def test_wait_for_events_times_out_saying_how_many_came() -> None:
    recorder = EventRecorder()
    recorder.cmcsync_on_event(price(1), CLIENT)
    with pytest.raises(TimeoutError, match=rf"expected 3 {KLINE} events within 0\.05 s, got 0"):
        recorder.wait_for_events(3, timeout=0.05, channel=KLINE)


def test_wait_for_returns_the_predicate_value_or_times_out_naming_it() -> None:
    recorder = EventRecorder()
    threading.Timer(0.05, recorder.cmcsync_on_slow_consumer, args=(CLIENT, 8, 10)).start()
    calls = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_slow_consumer"), timeout=5)
    assert calls == [{"client": CLIENT, "depth": 8, "capacity": 10}]

    def disconnected() -> bool:
        return bool(recorder.hook_calls("cmcsync_on_disconnect"))

    with pytest.raises(TimeoutError, match=r"disconnected still false after 0\.05 s"):
        recorder.wait_for(disconnected, timeout=0.05)


def test_it_declares_the_subscriptions_it_was_given() -> None:
    wanted = [(PRICE, {"crypto_ids": [1, 1027]})]
    assert EventRecorder(subscriptions=wanted).cmcsync_subscriptions(CLIENT) == wanted
    assert EventRecorder().cmcsync_subscriptions(CLIENT) is None
