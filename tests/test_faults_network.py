"""Fault matrix, part 2: the network and the server misbehave without a close code.

Half-open silence (the server, then the network), a slow server, a server restarted on the
same port, and a subscribe refused during the replay. Each case asserts the documented
outcome and that no subscription was lost.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import cmcsync
from cmcsync.hookspecs import hookimpl
from cmcsync.testing import EventRecorder, Simulator
from tests._proxy import (
    PRICE,
    Relay,
    failure_reasons,
    server_set,
    subscribe_mix,
    until,
    wait_flowing,
    wait_replayed,
    wanted_set,
)
from tests.conftest import KEY, make_client

# Pings every 0.2 s and 0.4 s of silence after one: a dead socket is found in < 1 s.
FAST_KEEPALIVE = cmcsync.Timeouts(ping_interval=0.2, pong=0.4, ack=5, connect=1.0, close=2)


def test_silent_server_is_replaced_again_and_again_until_it_answers(
    recorder: EventRecorder,
) -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, speed=200, seed=21) as sim:
        client = make_client(sim.url, recorder, timeouts=FAST_KEEPALIVE)
        try:
            subscribe_mix(client)
            sim.silence(True)
            # The first socket and the next one (silent from its upgrade on) are declared
            # dead in turn: the client keeps trying while the server says nothing.
            sim.wait_for(
                lambda: sum(c.closed for c in sim.all_connections()) >= 2,
                timeout=5,
                what="two silent connections replaced",
            )
            sim.silence(False)
            wait_replayed(sim, client)
            wait_flowing(recorder)
        finally:
            client.close()
    reasons = failure_reasons(recorder)
    assert any("keep-alive timeout" in reason for reason in reasons), reasons


def test_half_open_network_is_detected_and_the_session_restored(
    recorder: EventRecorder,
) -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, speed=200, seed=22) as sim:
        with Relay(sim.port) as relay:
            client = make_client(
                f"ws://127.0.0.1:{relay.port}/v1", recorder, timeouts=FAST_KEEPALIVE
            )
            try:
                subscribe_mix(client)
                relay.blackhole(True)
                # Nothing passes either way, sockets stay open: the old connection dies by
                # keep-alive, and new handshakes time out.
                recorder.wait_for(
                    lambda: (
                        any("keep-alive" in r for r in failure_reasons(recorder))
                        and any("timed out" in r for r in failure_reasons(recorder))
                    ),
                    timeout=8,
                )
                relay.blackhole(False)
                wait_replayed(sim, client, timeout=8)
                wait_flowing(recorder)
            finally:
                client.close()


def test_slow_server_works_without_spurious_reconnects(recorder: EventRecorder) -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, speed=200, seed=23) as sim:
        with Relay(sim.port, delay=0.05) as relay:
            client = make_client(
                f"ws://127.0.0.1:{relay.port}/v1", recorder, timeouts=FAST_KEEPALIVE
            )
            try:
                subscribe_mix(client)
                wait_flowing(recorder)
                # Several ping rounds of 0.1 s round trips: none is mistaken for a dead socket.
                sim.wait_for(
                    lambda: sum(m.get("method") == "ping" for m in sim.received()) >= 5,
                    timeout=5,
                )
                assert client.stats()["reconnects"] == 0
                assert server_set(sim) == wanted_set(client)
            finally:
                client.close()


def test_handshake_slower_than_the_connect_timeout_is_retried(recorder: EventRecorder) -> None:
    timeouts = cmcsync.Timeouts(connect=0.3, ack=5, pong=0.5, close=2)
    with Simulator(api_keys=(KEY,), speed=200, seed=24) as sim, Relay(sim.port) as relay:
        client = make_client(f"ws://127.0.0.1:{relay.port}/v1", recorder, timeouts=timeouts)
        try:
            subscribe_mix(client)
            relay.delay = 0.5
            relay.sever()
            recorder.wait_for(
                lambda: sum("timed out" in r for r in failure_reasons(recorder)) >= 2,
                timeout=8,
            )
            relay.delay = 0.0
            wait_replayed(sim, client, timeout=8)
            wait_flowing(recorder)
        finally:
            client.close()
    assert client.stats()["failed_attempts"] >= 2


def test_ack_slower_than_the_ack_timeout_keeps_the_subscription(recorder: EventRecorder) -> None:
    timeouts = cmcsync.Timeouts(ack=0.2, pong=5, close=2)
    with Simulator(api_keys=(KEY,), speed=200, seed=25) as sim, Relay(sim.port) as relay:
        client = make_client(f"ws://127.0.0.1:{relay.port}/v1", recorder, timeouts=timeouts)
        try:
            client.subscribe(PRICE, crypto_ids=[1])
            relay.delay = 0.3
            with pytest.raises(cmcsync.CmcsyncTimeoutError, match="stay wanted"):
                client.subscribe(PRICE, crypto_ids=[1027])
            relay.delay = 0.0
            wait_replayed(sim, client)
            assert len(wanted_set(client)) == 2
        finally:
            client.close()


def test_server_restarted_on_the_same_port_gets_everything_back(
    recorder: EventRecorder,
) -> None:
    first = Simulator(api_keys=(KEY,), speed=200, seed=26).start()
    try:
        port = first.port
        client = make_client(first.url, recorder)
        try:
            subscribe_mix(client)
            wanted = wanted_set(client)
            first.stop()
            # The close (1001), then at least one attempt refused while nothing listens.
            recorder.wait_for(lambda: len(failure_reasons(recorder)) >= 2, timeout=5)
            with Simulator(api_keys=(KEY,), port=port, speed=200, seed=27) as second:
                wait_replayed(second, client)
                wait_flowing(recorder)
                assert wanted_set(client) == wanted
        finally:
            client.close()
    finally:
        first.stop()
    calls = recorder.hook_calls("cmcsync_on_disconnect")
    assert (calls[0]["code"], calls[0]["will_reconnect"]) == (1001, True)
    assert any("Connection refused" in r for r in failure_reasons(recorder)[1:])


def _reject_one_replay_request(
    sim: Simulator, client: cmcsync.Client, code: int = 5001
) -> set[object]:
    """Have the first subscribe of the next replay refused with ``code``; return what it held."""
    first = sim.connections()[0]
    sim.fail_next_subscribe(code, detail="replay fault")
    sim.close_all(1012, "restart")
    sim.wait_for(lambda: first.closed)
    sim.wait_for(
        lambda: (
            cmcsync.SubscriptionState.REJECTED in client.subscriptions().values()
            and cmcsync.SubscriptionState.PENDING not in client.subscriptions().values()
        ),
        what="the replay settled with a rejection",
    )
    return {s for s, state in client.subscriptions().items() if state.value == "rejected"}


def _subscribes_for(sim: Simulator, subs: set[object]) -> int:
    """How many subscribe requests the server received that asked for any of ``subs``."""
    channels = {s.channel for s in subs}  # type: ignore[attr-defined]
    return sum(
        1 for m in sim.received() if m.get("method") == "subscribe" and m.get("channel") in channels
    )


def test_subscribe_refused_by_a_server_error_during_replay_is_reported_then_retried_by_itself(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        wanted = wanted_set(client)
        rejected = _reject_one_replay_request(sim, client)
        # One request was refused: all three prices, or the kline.
        assert len(rejected) in (1, 3)
        assert len({s.channel for s in rejected}) == 1  # type: ignore[attr-defined]
        reconnects = client.stats()["reconnects"]

        def states(state: str) -> list[dict[str, Any]]:
            calls = recorder.hook_calls("cmcsync_on_subscription_state")
            return [kw for kw in calls if kw["state"] == state]

        # The registry changes first; the hooks follow on the dispatcher thread.
        recorder.wait_for(lambda: len(states("rejected")) >= len(rejected))
        reports = states("rejected")
        assert len(reports) == len(rejected)
        error = reports[0]["error"]
        assert isinstance(error, cmcsync.SubscriptionError)
        assert (error.code, error.category, error.detail) == (5001, "SERVER", "replay fault")
        assert wanted_set(client) == wanted  # still wanted
        # A server error is the server's, not the request's: sent again after a backoff
        # (cap 0.2 s here), on the same connection, with no reconnect.
        wait_replayed(sim, client, timeout=3)
        assert client.stats()["reconnects"] == reconnects
        active_after = [
            kw
            for kw in states("active")[-len(rejected) :]
            if (kw["channel"], frozenset(kw["params"].items())) in wanted
        ]
        assert len(active_after) == len(rejected)
        wait_flowing(recorder)
    finally:
        client.close()


def test_subscribe_refused_during_replay_for_a_reason_of_its_own_waits_for_the_next_reconnect(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        wanted = wanted_set(client)
        rejected = _reject_one_replay_request(sim, client, code=2302)
        sent = _subscribes_for(sim, rejected)
        # Not the server's failure: sending it again would be refused again. Retries of a
        # server error would come within the backoff cap (0.2 s); none comes in 1 s.
        with pytest.raises(TimeoutError):
            sim.wait_for(lambda: _subscribes_for(sim, rejected) > sent, timeout=1.0)
        assert wanted_set(client) == wanted
        assert server_set(sim) == wanted - {(s.channel, frozenset(s.params)) for s in rejected}  # type: ignore[attr-defined]
        # The next reconnect replays the refused ones too.
        second = sim.connections()[0]
        sim.close_all(1012, "restart")
        sim.wait_for(lambda: second.closed)
        wait_replayed(sim, client)
        wait_flowing(recorder)
    finally:
        client.close()


def test_a_server_error_at_subscribe_time_is_raised_and_not_retried(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        sim.fail_next_subscribe(5001)
        with pytest.raises(cmcsync.SubscriptionError) as info:
            client.subscribe(PRICE, crypto_ids=[74])
        assert info.value.code == 5001
        # The caller was told; the subscription is not wanted and never sent again.
        assert all(s.params_dict.get("crypto_ids") != 74 for s in client.subscriptions())

        def sent_74() -> int:
            return sum(
                1
                for m in sim.received()
                if m.get("method") == "subscribe"
                and 74 in (m.get("params") or {}).get("crypto_ids", ())
            )

        with pytest.raises(TimeoutError):
            sim.wait_for(lambda: sent_74() > 1, timeout=1.0)
    finally:
        client.close()


def test_a_subscription_refused_at_subscribe_time_is_not_replayed(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        sim.fail_next_subscribe(2302)
        with pytest.raises(cmcsync.SubscriptionError):
            client.subscribe(PRICE, crypto_ids=[74])
        first = sim.connections()[0]
        sim.close_all(1012, "restart")
        sim.wait_for(lambda: first.closed)
        wait_replayed(sim, client, timeout=2)
        assert client.stats()["placed_subscriptions"] == 4
    finally:
        client.close()


class SlowPlugin:
    """Takes ``seconds`` per event, so a fast server gets ahead of the client."""

    def __init__(self, seconds: float = 0.002) -> None:
        self._never = threading.Event()
        self.seconds = seconds

    @hookimpl
    def cmcsync_on_event(self, event: Any, client: Any) -> None:
        self._never.wait(self.seconds)


def test_a_lagging_link_gets_a_gap_that_covers_every_frame_it_lost(
    recorder: EventRecorder,
) -> None:
    ids = list(range(1, 11))
    with Simulator(api_keys=(KEY,), speed=500, seed=28) as sim, Relay(sim.port) as relay:
        client = make_client(
            f"ws://127.0.0.1:{relay.port}/v1",
            recorder,
            timeouts=cmcsync.Timeouts(pong=5, ack=5, close=2),
            liveness=cmcsync.Liveness(enabled=False),
        )
        try:
            client.subscribe(PRICE, crypto_ids=ids)
            first = sim.connections()[0]
            # ~1000 pushes a second through a link that passes 64 KiB per 0.2 s: it falls
            # behind, and what it holds when it breaks never arrives.
            relay.delay = 0.2
            sim.wait_for(
                lambda: len(first.sent) - len(recorder.events) > 500, timeout=10, what="a lag"
            )
            relay.sever()
            relay.delay = 0.0
            sim.wait_for(lambda: first.closed)
            recorder.wait_for(
                lambda: len(recorder.hook_calls("cmcsync_on_gap")) >= len(ids), timeout=10
            )
            gaps = {kw["params"]["crypto_ids"]: kw for kw in recorder.hook_calls("cmcsync_on_gap")}
            delivered = {(e.params["crypto_ids"], e.ts) for e in recorder.events}
        finally:
            client.close()
    lost = [
        (m["params"]["crypto_ids"], m["ts"])
        for m in first.sent
        if m.get("type") == "data" and (m["params"]["crypto_ids"], m["ts"]) not in delivered
    ]
    assert len(lost) > 100, "the broken link cost frames: the check has something to check"
    outside = [
        (cid, ts) for cid, ts in lost if not gaps[cid]["start_ms"] <= ts <= gaps[cid]["end_ms"]
    ]
    assert not outside, f"{len(outside)} of {len(lost)} lost frames are outside their gap"


def test_close_leaves_no_thread_behind_while_a_slow_plugin_keeps_the_queue_full() -> None:
    slow = SlowPlugin(seconds=0.05)
    with Simulator(api_keys=(KEY,), speed=500, seed=29) as sim:
        client = cmcsync.Client(
            api_key=KEY,
            url=sim.url,
            autoload=False,
            plugins=[slow],
            dispatch=cmcsync.DispatchConfig(queue_size=20),
            liveness=cmcsync.Liveness(enabled=False),
        )
        try:
            client.subscribe(PRICE, crypto_ids=list(range(1, 11)))
            # The reader is stuck handing a batch to a full queue: 20 events of 50 ms each.
            until(sim, lambda: client.stats()["dispatch"]["blocked"], timeout=10)
        finally:
            started = time.monotonic()
            client.close(timeout=1.0)
            took = time.monotonic() - started
        alive = [t.name for t in threading.enumerate() if t.name.startswith("cmcsync-")]
        assert alive == ["cmcsync-simulator"], alive
    assert took < 3.0
