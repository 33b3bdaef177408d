"""Keep-alive, dead-connection detection, reconnects, replay and the close-code policy."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

import pytest

import cmcsync
from cmcsync._connection import Connection, Frame
from cmcsync._frames import OPCODE_TOO_LARGE
from cmcsync.exceptions import CmcsyncError
from cmcsync.testing import EventRecorder, Simulator, wait_until
from tests.conftest import KEY, make_client

PRICE = "market@crypto_latest_price"


def pings(sim: Simulator, conn_index: int = 0) -> list[dict]:
    conn = sim.all_connections()[conn_index]
    return [m for m in conn.received if m.get("method") == "ping"]


def subscribed_ids(conn: object) -> set[int]:
    return {dict(p)["crypto_ids"] for c, p in conn.subscriptions if c == PRICE}  # type: ignore[attr-defined]


def test_pings_follow_the_welcome_interval() -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, feeds=False) as sim:
        client = make_client(sim.url)
        try:
            client.start()
            sim.wait_for(lambda: len(pings(sim)) >= 4, timeout=5, what="4 pings")
            stamps = list(pings(sim))
            assert all(isinstance(m["id"], int) for m in stamps)
            assert len({m["id"] for m in stamps}) == len(stamps), "ping ids are unique"
        finally:
            client.close()
        assert client.stats()["pongs"] >= 3
        assert client.stats()["reconnects"] == 0


def test_ping_cadence_is_the_announced_one() -> None:
    # 4 pings at 250 ms take ~1 s; at the 10 s default they would take 40 s.
    with Simulator(api_keys=(KEY,), ping_interval_ms=250, feeds=False) as sim:
        client = make_client(sim.url)
        try:
            started = time.monotonic()
            client.start()
            sim.wait_for(lambda: len(pings(sim)) >= 4, timeout=5, what="4 pings")
            elapsed = time.monotonic() - started
        finally:
            client.close()
    assert elapsed >= 0.75, "pings came faster than announced"


def test_silent_server_is_detected_and_replaced() -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, speed=100, seed=1) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder, timeouts=cmcsync.Timeouts(pong=0.4, ack=5))
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027])
            first = sim.connections()[0]
            sim.silence(True)
            silenced_at = time.monotonic()
            sim.wait_for(lambda: first.closed, timeout=5, what="silent connection dropped")
            detected = time.monotonic() - silenced_at
            sim.silence(False)
            sim.wait_for(
                lambda: (
                    len(sim.connections()) == 1
                    and sim.connections()[0] is not first
                    and subscribed_ids(sim.connections()[0]) == {1, 1027}
                ),
                timeout=5,
                what="replayed on a new connection",
            )
            recorder.clear()
            recorder.wait_for_events(2, timeout=5)
        finally:
            client.close()
        # Two ping intervals plus the deadline, with room for a loaded machine.
        assert detected < 2 * 0.2 + 0.4 + 1.0
        assert client.stats()["reconnects"] >= 1


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 1013, 1014, 4000])
def test_non_fatal_close_reconnects_and_replays_everything(code: int) -> None:
    with Simulator(api_keys=(KEY,), speed=200, seed=3) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder)
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027, 52])
            client.subscribe("onchain@kline", platform_id=14, address=["0xabc"], interval="1s")
            sim.close_all(code, "test")
            sim.wait_for(lambda: len(sim.all_connections()) == 2, timeout=5, what="reconnect")
            second = sim.all_connections()[1]
            sim.wait_for(
                lambda: (
                    subscribed_ids(second) == {1, 1027, 52}
                    and any(c == "onchain@kline" for c, _ in second.subscriptions)
                ),
                timeout=5,
                what="replay",
            )
            # Every subscription is acked again.
            sim.wait_for(
                lambda: set(client.subscriptions().values()) == {cmcsync.SubscriptionState.ACTIVE},
                timeout=5,
            )
            disconnects = [c for c in recorder.calls if c[0] == "cmcsync_on_disconnect"]
            assert disconnects[0][1]["code"] == code
            assert disconnects[0][1]["will_reconnect"] is True
        finally:
            client.close()


def test_nothing_sent_after_the_replay_is_missing() -> None:
    with Simulator(api_keys=(KEY,), speed=300, seed=5) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder)
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027, 52, 74])
            sim.drop_all()
            sim.wait_for(lambda: len(sim.all_connections()) == 2, timeout=5, what="reconnect")
            second = sim.all_connections()[1]
            sim.wait_for(
                lambda: sum(1 for m in second.sent if m.get("type") == "data") >= 20,
                timeout=10,
                what="data after the replay",
            )
            client.unsubscribe_all()
            sent = [
                (m["params"]["crypto_ids"], m["ts"], m["data"].get("p"))
                for m in list(second.sent)
                if m.get("type") == "data"
            ]
            recorder.wait_for(
                lambda: (
                    {(e.params["crypto_ids"], e.ts) for e in recorder.events}
                    >= {(cid, ts) for cid, ts, _ in sent}
                ),
                timeout=5,
            )
        finally:
            client.close()


@pytest.mark.parametrize("code", [4100, 4101, 4102])
def test_fatal_close_codes_stop_without_retrying(code: int) -> None:
    keys = {"bad": 4101, "basic": 4102}
    key = {4100: "unknown-key", 4101: "bad", 4102: "basic"}[code]
    with Simulator(api_keys=(KEY, "bad", "basic"), key_status=keys, feeds=False) as sim:
        client = cmcsync.Client(
            api_key=key,
            url=sim.url,
            autoload=False,
            backoff=cmcsync.Backoff(base=0.01, cap=0.05),
        )
        try:
            client.start()
            with pytest.raises(cmcsync.AuthError) as info:
                client.wait(5)
            assert info.value.close_code == code
            assert key not in str(info.value)
            assert client.state is cmcsync.ClientState.FAILED
            with pytest.raises(cmcsync.AuthError):
                client.subscribe(PRICE, crypto_ids=[1])
        finally:
            client.close()
        assert len(sim.all_connections()) == 1, "no retry after a fatal close"


@pytest.mark.parametrize("status", [401, 403])
def test_fatal_handshake_statuses(status: int) -> None:
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        sim.reject_handshakes(status, count=5)
        client = make_client(sim.url)
        try:
            client.start()
            with pytest.raises(cmcsync.AuthError) as info:
                client.wait(5)
            assert info.value.http_status == status
        finally:
            client.close()
        assert len(sim.handshakes) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_other_handshake_statuses_are_retried(status: int) -> None:
    with Simulator(api_keys=(KEY,), speed=100) as sim:
        sim.reject_handshakes(status, count=2)
        client = make_client(sim.url)
        try:
            client.subscribe(PRICE, crypto_ids=[1])
            assert len(sim.handshakes) == 3
            assert client.stats()["failed_attempts"] == 2
        finally:
            client.close()


def test_connection_limit_backs_off_and_retries() -> None:
    with Simulator(api_keys=(KEY,), max_connections=1, speed=100) as sim:
        holder = make_client(sim.url)
        client = make_client(sim.url, backoff=cmcsync.Backoff(base=0.01, cap=0.05, long_base=0.3))
        try:
            holder.subscribe(PRICE, crypto_ids=[1])
            client.start()
            sim.wait_for(
                lambda: any(c.close_code == 4004 for c in sim.all_connections()), timeout=5
            )
            holder.close()
            client.subscribe(PRICE, crypto_ids=[1027], timeout=10)
            limited = [c for c in sim.all_connections() if c.close_code == 4004]
            # The long backoff (>= 0.15 s each) keeps 4004 retries few.
            assert 1 <= len(limited) <= 20
        finally:
            holder.close()
            client.close()


def test_gives_up_after_max_attempts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = cmcsync.Client(
        api_key=KEY,
        url=f"ws://127.0.0.1:{port}/v1",
        autoload=False,
        backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=3),
    )
    try:
        client.start()
        with pytest.raises(cmcsync.GaveUpError, match="3 failed attempts"):
            client.wait(10)
    finally:
        client.close()


def test_subscribe_before_connect_is_sent_on_open(sim: Simulator) -> None:
    client = make_client(sim.url)
    try:
        client.subscribe(PRICE, crypto_ids=[1], wait=False)
        client.subscribe(PRICE, crypto_ids=[1027])
        sim.wait_for(lambda: subscribed_ids(sim.connections()[0]) == {1, 1027}, timeout=5)
    finally:
        client.close()


def test_gap_reported_per_subscription_covers_the_outage() -> None:
    with Simulator(api_keys=(KEY,), ping_interval_ms=200, speed=200, seed=9) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder, timeouts=cmcsync.Timeouts(pong=0.3, ack=5))
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027])
            recorder.wait_for_events(2, timeout=5)
            first = sim.connections()[0]
            silenced_ms = int(time.time() * 1000)
            sim.silence(True)
            sim.wait_for(lambda: first.closed, timeout=5, what="silent connection dropped")
            sim.silence(False)
            recorder.wait_for(
                lambda: len([c for c in recorder.calls if c[0] == "cmcsync_on_gap"]) == 2,
                timeout=5,
            )
            resumed_ms = int(time.time() * 1000)
        finally:
            client.close()
        gaps = [kw for name, kw in recorder.calls if name == "cmcsync_on_gap"]
        assert {g["params"]["crypto_ids"] for g in gaps} == {1, 1027}
        for gap in gaps:
            assert gap["start_ms"] <= silenced_ms + 5
            assert silenced_ms < gap["end_ms"] <= resumed_ms
        assert client.stats()["gaps"] == 2


def test_giving_up_reports_no_reconnect_and_attempts_as_errors() -> None:
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        sim.reject_handshakes(503, count=10)
        recorder = EventRecorder()
        client = make_client(
            sim.url, recorder, backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=2)
        )
        try:
            client.start()
            with pytest.raises(cmcsync.GaveUpError):
                client.wait(5)
        finally:
            client.close()
    errors = [kw["error"] for name, kw in recorder.calls if name == "cmcsync_on_error"]
    assert any("HTTP 503" in str(e) and "retrying" in str(e) for e in errors)
    assert isinstance(errors[-1], cmcsync.GaveUpError)
    assert not [c for c in recorder.calls if c[0] == "cmcsync_on_disconnect"], (
        "no socket ever opened, so nothing disconnected"
    )


class HandlerLog:
    """A connection handler that keeps everything the connection tells it."""

    def __init__(self) -> None:
        self.opens: list[bool] = []
        self.frames: list[Frame] = []
        self.closes: list[tuple[int | None, bool]] = []
        self.fatal: list[CmcsyncError] = []

    def on_open(self, conn: Connection, reconnect: bool) -> None:
        self.opens.append(reconnect)

    def on_frames(self, conn: Connection, frames: Sequence[Frame]) -> None:
        self.frames.extend(frames)

    def on_close(
        self, conn: Connection, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        self.closes.append((code, will_reconnect))

    def on_attempt_failed(self, conn: Connection, reason: str, will_retry: bool) -> None:
        pass

    def on_fatal(self, conn: Connection, error: CmcsyncError) -> None:
        self.fatal.append(error)

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.frames]


def text_of_size(size: int) -> str:
    """A JSON text frame of exactly ``size`` bytes."""
    head, tail = '{"type": "note", "pad": "', '"}'
    return head + "x" * (size - len(head) - len(tail)) + tail


def test_max_frame_bytes_is_the_largest_frame_a_connection_accepts() -> None:
    limit = 4096
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        handler = HandlerLog()
        conn = Connection(
            sim.url,
            KEY,
            handler,
            backoff=cmcsync.Backoff(base=0.05, cap=0.2),
            timeouts=cmcsync.Timeouts(close=2.0),
            max_frame_bytes=limit,
        )
        conn.start()
        try:
            sim.wait_for(lambda: len(sim.connections()) == 1, what="connected")
            first = sim.connections()[0]
            sim.push(text_of_size(limit), conn=first)
            wait_until(lambda: text_of_size(limit).encode() in handler.payloads(), timeout=5)
            assert handler.closes == []

            sim.push(text_of_size(limit + 1), conn=first)
            wait_until(lambda: handler.opens == [False, True], timeout=5)
            assert handler.closes == [(1009, True)]
            assert conn.last_close_code == 1009
            refused = [payload for op, payload in handler.frames if op == OPCODE_TOO_LARGE]
            assert refused == [
                f"a frame of {limit + 1} bytes is larger than max_frame_bytes={limit}".encode()
            ]
            assert text_of_size(limit + 1).encode() not in handler.payloads()

            sim.wait_for(lambda: [c is first for c in sim.connections()] == [False], what="back")
            sim.push(text_of_size(100))
            wait_until(lambda: text_of_size(100).encode() in handler.payloads(), timeout=5)
        finally:
            conn.close(2.0)
        assert handler.fatal == []
