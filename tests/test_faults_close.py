"""Fault matrix, part 1: every close code of CMC's table, sent to a running session.

Each case asserts the documented outcome (reconnected and replayed, backed off long, or
stopped with :class:`cmcsync.AuthError`) and that no subscription was lost: after the
reconnect the server holds exactly what the client wants, every subscription acknowledged,
each reported as a gap, and every price flowing again.
"""

from __future__ import annotations

import time

import pytest

import cmcsync
from cmcsync import _protocol
from cmcsync.testing import EventRecorder, Simulator
from tests._proxy import (
    PRICE,
    server_set,
    subscribe_mix,
    wait_flowing,
    wait_replayed,
    wanted_set,
)
from tests.conftest import KEY, make_client

FATAL = sorted(_protocol.FATAL_CLOSE_CODES)
# 1006 is reserved: it never travels in a close frame (see test_tcp_reset_...); 4004 and
# the fatal codes have tests of their own.
RECONNECTING = [*sorted(set(_protocol.CLOSE_CODES) - {1006, 4004} - set(FATAL)), 4000, 4999]


def gaps(recorder: EventRecorder) -> set[tuple[str, tuple[tuple[str, object], ...]]]:
    return {
        (kw["channel"], tuple(sorted(kw["params"].items())))
        for kw in recorder.hook_calls("cmcsync_on_gap")
    }


def wanted_keys(client: cmcsync.Client) -> set[tuple[str, tuple[tuple[str, object], ...]]]:
    return {(s.channel, tuple(sorted(s.params))) for s in client.subscriptions()}


def test_the_matrix_covers_every_close_code_of_the_table() -> None:
    covered = set(RECONNECTING) | set(FATAL) | {1006, 4004}
    assert set(_protocol.CLOSE_CODES) <= covered


@pytest.mark.parametrize("code", RECONNECTING)
def test_close_code_reconnects_and_replays_every_subscription(
    code: int, sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        wait_flowing(recorder)
        first = sim.connections()[0]
        sim.close_all(code, "fault matrix")
        sim.wait_for(lambda: first.closed, what="first connection closed")
        sim.wait_for(lambda: len(sim.all_connections()) == 2, what="reconnected")
        wait_replayed(sim, client)
        wait_flowing(recorder)
        (disconnect,) = recorder.hook_calls("cmcsync_on_disconnect")
        assert (disconnect["code"], disconnect["will_reconnect"]) == (code, True)
        assert first.close_code == code
        recorder.wait_for(lambda: gaps(recorder) == wanted_keys(client))
        stats = client.stats()
        assert stats["reconnects"] == 1
        assert stats["last_close_code"] == code
        assert stats["subscriptions"]["active"] == 4
    finally:
        client.close()


def test_tcp_reset_is_close_1006_and_reconnects_and_replays(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        first = sim.connections()[0]
        sim.drop_all()
        sim.wait_for(lambda: first.closed, what="first connection gone")
        sim.wait_for(lambda: len(sim.all_connections()) == 2, what="reconnected")
        wait_replayed(sim, client)
        wait_flowing(recorder)
        (disconnect,) = recorder.hook_calls("cmcsync_on_disconnect")
        assert disconnect["code"] is None, "no close frame came: no code to report"
        assert disconnect["reason"].startswith("connection lost")
        assert disconnect["will_reconnect"] is True
        assert sim.all_connections()[0].close_code == 1006
        recorder.wait_for(lambda: gaps(recorder) == wanted_keys(client))
    finally:
        client.close()


@pytest.mark.parametrize("code", FATAL)
def test_fatal_close_code_mid_session_stops_the_client_without_retrying(
    code: int, sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder, backoff=cmcsync.Backoff(base=0.01, cap=0.02))
    try:
        subscribe_mix(client)
        wanted = wanted_set(client)
        sim.close_all(code, _protocol.CLOSE_CODES[code])
        with pytest.raises(cmcsync.AuthError) as info:
            client.wait(5)
        assert info.value.close_code == code
        assert _protocol.auth_hint(code) in str(info.value)
        assert client.state is cmcsync.ClientState.FAILED
        # wait() returns as soon as the client stops; the hooks may still be on their way.
        recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_disconnect"))
        (disconnect,) = recorder.hook_calls("cmcsync_on_disconnect")
        assert (disconnect["code"], disconnect["will_reconnect"]) == (code, False)
        # With a 20 ms backoff a retry would come at once; none does.
        with pytest.raises(TimeoutError):
            sim.wait_for(lambda: len(sim.handshakes) > 1, timeout=0.5)
        # The wanted set is kept for inspection: stopping is not forgetting.
        assert wanted_set(client) == wanted
        with pytest.raises(cmcsync.AuthError):
            client.subscribe(PRICE, crypto_ids=[74])
    finally:
        client.close()


def test_4004_backs_off_long_then_retries_and_replays(recorder: EventRecorder) -> None:
    long_base = 0.6
    with Simulator(api_keys=(KEY,), speed=200, seed=11) as sim:
        client = make_client(
            sim.url,
            recorder,
            max_connections=1,
            backoff=cmcsync.Backoff(base=0.01, cap=0.02, long_base=long_base),
        )
        try:
            subscribe_mix(client)
            sim.close_all(4004, "Connection limit")
            closed_at = time.monotonic()
            sim.wait_for(lambda: len(sim.all_connections()) == 2, timeout=5, what="retry")
            waited = time.monotonic() - closed_at
            wait_replayed(sim, client)
            wait_flowing(recorder)
        finally:
            client.close()
    # The first long window is long_base; the wait is at least half of it.
    assert waited >= long_base / 2 - 0.05
    disconnect = recorder.hook_calls("cmcsync_on_disconnect")[0]
    assert (disconnect["code"], disconnect["will_reconnect"]) == (4004, True)


def test_4004_moves_subscriptions_to_open_connections_with_room(
    recorder: EventRecorder,
) -> None:
    with Simulator(api_keys=(KEY,), sub_limit=4, speed=200, seed=12) as sim:
        client = make_client(
            sim.url,
            recorder,
            max_connections=2,
            backoff=cmcsync.Backoff(base=0.01, cap=0.02, long_base=0.6),
        )
        try:
            client.subscribe(PRICE, crypto_ids=[1])  # learns sub_limit=4
            client.subscribe(PRICE, crypto_ids=[1027, 52, 74, 2010, 5426])
            first, second = sim.connections()
            assert (len(first.subscriptions), len(second.subscriptions)) == (3, 3)
            first.close(4004, "Connection limit")
            # The other connection takes what it has room for at once...
            sim.wait_for(lambda: len(second.subscriptions) == 4, timeout=2, what="moved")
            assert client.stats()["moved_subscriptions"] == 1
            assert len(sim.all_connections()) == 2, "no new connection for a key at its limit"
            # ...and the refused one replays the rest after its long backoff.
            sim.wait_for(lambda: len(sim.connections()) == 2, timeout=5, what="reconnect")
            sim.wait_for(
                lambda: sum(len(c.subscriptions) for c in sim.connections()) == 6, timeout=5
            )
            recorder.wait_for(
                lambda: set(client.subscriptions().values()) == {cmcsync.SubscriptionState.ACTIVE},
                timeout=5,
            )
        finally:
            client.close()


def test_repeated_4004_retries_slowly_until_a_slot_frees(recorder: EventRecorder) -> None:
    with Simulator(api_keys=(KEY,), max_connections=1, speed=200, seed=13) as sim:
        holder = make_client(sim.url)
        client = make_client(
            sim.url,
            recorder,
            max_connections=1,
            backoff=cmcsync.Backoff(base=0.01, cap=0.02, long_base=0.4),
        )
        try:
            holder.subscribe(PRICE, crypto_ids=[1])
            subscribe_mix(client, wait=False)
            started = time.monotonic()
            sim.wait_for(
                lambda: sum(c.close_code == 4004 for c in sim.all_connections()) >= 3,
                timeout=5,
                what="three refusals",
            )
            elapsed = time.monotonic() - started
            refused = sum(c.close_code == 4004 for c in sim.all_connections())
            holder.close()
            wait_replayed(sim, client, timeout=5)
            wait_flowing(recorder)
        finally:
            holder.close()
            client.close()
        # Each retry waits at least long_base / 2 = 0.2 s after the first refusal.
        assert elapsed >= 2 * 0.2 - 0.05
        assert refused <= 1 + elapsed / 0.2 + 1
        states = {kw["state"] for kw in recorder.hook_calls("cmcsync_on_subscription_state")}
        assert "rejected" not in states, "a connection limit is not a refused subscription"


def test_repeated_4004_with_the_default_pool_does_not_multiply_connections(
    recorder: EventRecorder,
) -> None:
    with Simulator(api_keys=(KEY,), max_connections=1, speed=200, seed=14) as sim:
        holder = make_client(sim.url)
        client = make_client(
            sim.url, recorder, backoff=cmcsync.Backoff(base=0.01, cap=0.02, long_base=0.4)
        )
        try:
            holder.subscribe(PRICE, crypto_ids=[1])
            subscribe_mix(client, wait=False)
            sim.wait_for(
                lambda: sum(c.close_code == 4004 for c in sim.all_connections()) >= 2,
                timeout=5,
            )
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                sim.wait_for(
                    lambda: sum(c.close_code == 4004 for c in sim.all_connections()) >= 12,
                    timeout=1.0,
                )
            assert time.monotonic() - started >= 0.9, "at most ~5 refusals a second"
            slots = client.stats()["connections"]
            assert len(slots) == 1, "a connection limit is no reason to open more"
            holder.close()
            wait_replayed(sim, client, timeout=5)
            assert server_set(sim) == wanted_set(client)
        finally:
            holder.close()
            client.close()
