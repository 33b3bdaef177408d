"""A subscription the server stops serving is found and recovered, step by step."""

from __future__ import annotations

import time

import cmcsync
from cmcsync.testing import EventRecorder, Simulator
from tests.conftest import KEY, make_client

PRICE = "market@crypto_latest_price"
# The simulator at speed 100 pushes each price every 50 ms; expect one every 0.1 s.
FAST = cmcsync.Liveness(cadences={PRICE: 0.1}, factor=3.0, check_interval=0.05)


def stale_calls(recorder: EventRecorder) -> list[dict]:
    return [kw for name, kw in recorder.calls if name == "cmcsync_on_stale"]


def test_a_stalled_subscription_is_resubscribed_and_flows_again() -> None:
    with Simulator(api_keys=(KEY,), speed=100, seed=21) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder, liveness=FAST)
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027])
            recorder.wait_for_events(4, timeout=5)
            assert sim.stall(PRICE, {"crypto_ids": 1027}) == 1
            recorder.wait_for(lambda: len(stale_calls(recorder)) >= 1, timeout=5)
            (call,) = stale_calls(recorder)[:1]
            assert call["action"] == "resubscribe"
            assert call["params"] == {"crypto_ids": 1027}
            assert call["silent_for"] >= 0.3
            mark = len(recorder.events)
            recorder.wait_for(
                lambda: any(e.params["crypto_ids"] == 1027 for e in recorder.events[mark:]),
                timeout=5,
            )
            assert client.stats()["reconnects"] == 0, "a resubscribe was enough"
            assert client.stats()["stale_resubscribes"] >= 1
        finally:
            client.close()


def test_a_subscription_that_stays_silent_gets_its_connection_replaced() -> None:
    with Simulator(api_keys=(KEY,), speed=100, seed=22) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder, liveness=FAST)
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027])
            recorder.wait_for_events(4, timeout=5)
            sim.stall(PRICE, {"crypto_ids": 1}, until="reconnect")
            recorder.wait_for(
                lambda: (
                    [c["action"] for c in stale_calls(recorder)][:2] == ["resubscribe", "reconnect"]
                ),
                timeout=5,
            )
            sim.wait_for(lambda: len(sim.all_connections()) == 2, timeout=5, what="new connection")
            mark = len(recorder.events)
            recorder.wait_for(
                lambda: any(e.params["crypto_ids"] == 1 for e in recorder.events[mark:]),
                timeout=5,
            )
            gaps = [kw for name, kw in recorder.calls if name == "cmcsync_on_gap"]
            assert {g["params"]["crypto_ids"] for g in gaps} == {1, 1027}
        finally:
            client.close()


def test_only_clock_driven_channels_are_watched_by_default() -> None:
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder, liveness=cmcsync.Liveness(check_interval=3600))
        try:
            client.subscribe("onchain@transaction", platform_id=14, address="0xabc")
            client.subscribe(PRICE, crypto_ids=[1])
            # An hour of silence, checked at once instead of waited for.
            client._engine.check_liveness(time.monotonic() + 3600)
            recorder.wait_for(lambda: len(stale_calls(recorder)) == 1, timeout=5)
            assert stale_calls(recorder)[0]["channel"] == PRICE
        finally:
            client.close()
