"""The client against the simulator: subscribe, acks, errors, stats and close."""

from __future__ import annotations

import json
import threading
import time

import pytest

import cmcsync
from cmcsync.testing import EventRecorder, Simulator, wait_until
from tests.conftest import KEY, make_client

PRICE = "market@crypto_latest_price"
EVM = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"


def sent_by_client(sim: Simulator, method: str) -> list[dict]:
    return [m for m in sim.received() if m.get("method") == method]


def server_view(sim: Simulator) -> set[tuple[str, frozenset]]:
    (conn,) = sim.connections()
    return set(conn.subscriptions)


def test_subscribe_waits_for_the_ack_and_sends_one_grouped_request(
    sim: Simulator, client: cmcsync.Client
) -> None:
    subs = client.subscribe(PRICE, crypto_ids=[1, 1027])
    assert [s.params_dict for s in subs] == [{"crypto_ids": 1}, {"crypto_ids": 1027}]
    assert set(client.subscriptions().values()) == {cmcsync.SubscriptionState.ACTIVE}
    (request,) = sent_by_client(sim, "subscribe")
    assert request["channel"] == PRICE
    assert request["params"] == {"crypto_ids": [1, 1027]}
    assert isinstance(request["id"], int)
    assert len(server_view(sim)) == 2


def test_events_arrive_typed_with_the_params_echo(sim: Simulator, client: cmcsync.Client) -> None:
    client.subscribe(PRICE, crypto_ids=[1])
    event = next(iter(client.events(timeout=5)))
    assert event.channel == PRICE
    assert event.params == {"crypto_ids": 1}
    assert isinstance(event.ts, int)
    assert client.stats()["events_by_channel"][PRICE] >= 1


def test_bad_params_raise_before_anything_is_sent(sim: Simulator, client: cmcsync.Client) -> None:
    client.start()
    client.wait_connected(5)
    with pytest.raises(cmcsync.ConfigError, match="interval"):
        client.subscribe("onchain@kline", platform_id=14, address=EVM, interval="2m")
    with pytest.raises(cmcsync.ConfigError, match="crypto_ids"):
        client.subscribe(PRICE)
    assert sent_by_client(sim, "subscribe") == []
    assert client.subscriptions() == {}


def test_rejected_subscribe_carries_the_server_error(
    sim: Simulator, client: cmcsync.Client
) -> None:
    sim.fail_next_subscribe(2302)
    with pytest.raises(cmcsync.SubscriptionError) as info:
        client.subscribe(PRICE, crypto_ids=[1])
    error = info.value
    assert error.code == 2302 and error.error_code == 2302
    assert error.category == "PROTOCOL"
    assert error.error_message == "Channel not available on your plan."
    assert error.channel == PRICE
    assert "Channel not available on your plan." in str(error)
    assert client.subscriptions() == {}, "a refused subscription is no longer wanted"


def test_subscription_limit_on_the_only_connection_is_a_rejection(sim: Simulator) -> None:
    client = make_client(sim.url, max_connections=1)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        sim.fail_next_subscribe(2303)
        with pytest.raises(cmcsync.SubscriptionError) as info:
            client.subscribe(PRICE, crypto_ids=[2])
        assert info.value.code == 2303
        assert info.value.error_message == "Subscription limit reached."
    finally:
        client.close()


def test_the_server_sub_limit_is_enforced_before_sending(sim: Simulator) -> None:
    with Simulator(api_keys=(KEY,), sub_limit=3, speed=50) as small:
        client = make_client(small.url, max_connections=1)
        try:
            client.subscribe(PRICE, crypto_ids=[1])  # learns sub_limit=3 from the ack
            with pytest.raises(cmcsync.ConfigError, match="the budget is 3"):
                client.subscribe(PRICE, crypto_ids=[2, 3, 4])
            assert len(sent_by_client(small, "subscribe")) == 1
        finally:
            client.close()


def test_duplicate_subscribe_sends_nothing_new(sim: Simulator, client: cmcsync.Client) -> None:
    client.subscribe(PRICE, crypto_ids=[1])
    client.subscribe(PRICE, crypto_ids=["1"])
    assert len(sent_by_client(sim, "subscribe")) == 1


def test_unsubscribe_forms(sim: Simulator, client: cmcsync.Client) -> None:
    client.subscribe(PRICE, crypto_ids=[1, 1027, 52])
    client.subscribe("onchain@kline", platform_id=14, address=[EVM], interval="1m")
    removed = client.unsubscribe(PRICE, crypto_ids=[1027])
    assert [s.params_dict["crypto_ids"] for s in removed] == [1027]
    assert {dict(p)["crypto_ids"] for c, p in server_view(sim) if c == PRICE} == {1, 52}

    client.unsubscribe("onchain@kline")
    (whole,) = [m for m in sent_by_client(sim, "unsubscribe") if "params" not in m]
    assert whole["channel"] == "onchain@kline"
    assert {c for c, _ in server_view(sim)} == {PRICE}

    assert len(client.unsubscribe_all()) == 2
    assert server_view(sim) == set()
    assert client.subscriptions() == {}


def test_malformed_frames_are_counted_and_skipped(
    sim: Simulator, client: cmcsync.Client, recorder: EventRecorder
) -> None:
    client.subscribe(PRICE, crypto_ids=[1])
    sim.push("this is not json")
    sim.push(b"\x00\x01binary")
    sim.push("[1, 2]")
    sim.push({"type": "mystery"})
    sim.push({"type": "data", "channel": "market@nonsense", "params": {}, "data": {}, "ts": 1})
    sim.push({"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "ts": 1})
    sim.push({"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "data": [], "ts": 1})
    recorder.wait_for(lambda: client.stats()["malformed"] >= 7, timeout=5)
    kinds = client.stats()["malformed_by_kind"]
    for kind in (
        "not_json",
        "binary",
        "not_object",
        "unknown_type",
        "unknown_channel",
        "missing_field",
    ):
        assert kinds.get(kind), kind
    # The connection went on: data still flows, nothing reconnected.
    recorder.clear()
    recorder.wait_for_events(2, timeout=5)
    assert client.stats()["reconnects"] == 0
    errors = [c for c in recorder.calls if c[0] == "cmcsync_on_error"]
    assert errors or client.stats()["malformed"] >= 7


def test_stats_count_frames_and_bytes(sim: Simulator, client: cmcsync.Client) -> None:
    client.subscribe(PRICE, crypto_ids=[1])
    next(iter(client.events(timeout=5)))
    stats = client.stats()
    assert stats["frames_received"] >= 3  # welcome, ack, data
    assert stats["bytes_received"] > 100
    assert stats["acks"] == 1
    assert stats["state"] == "running"
    assert KEY not in repr(stats) and KEY not in repr(client)


def test_close_is_idempotent_and_joins_every_thread(sim: Simulator) -> None:
    client = make_client(sim.url)
    client.subscribe(PRICE, crypto_ids=[1])
    client.close()
    client.close()
    client_threads = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("cmcsync-") and not t.name.startswith("cmcsync-sim")
    ]
    assert client_threads == []
    assert client.state is cmcsync.ClientState.CLOSED
    assert client.wait(0) is True
    with pytest.raises(cmcsync.ClientClosedError):
        client.subscribe(PRICE, crypto_ids=[1])


def test_missing_key_and_insecure_url_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMC_PRO_API_KEY", raising=False)
    with pytest.raises(cmcsync.ConfigError, match="CMC_PRO_API_KEY"):
        cmcsync.Client(url="ws://127.0.0.1:1/v1", autoload=False)
    with pytest.raises(cmcsync.ConfigError, match="unencrypted"):
        cmcsync.Client(api_key="k", url="ws://example.com/v1", autoload=False)
    with pytest.raises(cmcsync.ConfigError, match="ws:// or wss://"):
        cmcsync.Client(api_key="k", url="http://example.com/v1", autoload=False)


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, sim: Simulator) -> None:
    monkeypatch.setenv("CMC_PRO_API_KEY", KEY)
    client = cmcsync.Client(url=sim.url, autoload=False)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
    finally:
        client.close()


def test_plugin_declared_subscriptions_are_sent_at_start(sim: Simulator) -> None:
    class Wants:
        @cmcsync.hookimpl
        def cmcsync_subscriptions(self):  # type: ignore[no-untyped-def]
            return [(PRICE, {"crypto_ids": [1, 1027]})]

    recorder = EventRecorder()
    client = make_client(sim.url, recorder)
    client.register(Wants(), name="wants")
    try:
        client.start()
        sim.wait_for(lambda: len(sim.connections()) == 1 and len(server_view(sim)) == 2, timeout=5)
        recorder.wait_for_events(2, timeout=5)
    finally:
        client.close()


def test_tap_sees_raw_frames_and_feed_replays_them(
    sim: Simulator, client: cmcsync.Client, recorder: EventRecorder
) -> None:
    captured: list[tuple[float, str | bytes]] = []
    client.tap_frames(lambda at, frame: captured.append((at, frame)))
    client.subscribe(PRICE, crypto_ids=[1, 1027])
    recorder.wait_for_events(4, timeout=5)
    client.tap_frames(None)
    frames = [f for _, f in captured]
    messages = [json.loads(f) for f in frames]
    assert messages[0]["type"] == "welcome"
    data = [m for m in messages if m["type"] == "data"]

    replayed = EventRecorder()
    offline = cmcsync.Client(api_key="unused", url=sim.url, autoload=False, plugins=[replayed])
    try:
        offline.start(connect=False)
        offline.feed(frames)
        replayed.wait_for_events(len(data), timeout=5)
    finally:
        offline.close()
    assert [(e.params, e.ts) for e in replayed.events] == [(m["params"], m["ts"]) for m in data]
    assert offline.stats()["frames_received"] == 0, "no socket was used"


def test_a_refused_subscription_is_not_sent_again_after_a_reconnect(sim: Simulator) -> None:
    client = make_client(sim.url)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        sim.fail_next_subscribe(2302)
        with pytest.raises(cmcsync.SubscriptionError):
            client.subscribe(PRICE, crypto_ids=[1027])
        sim.close_all(1012)
        sim.wait_for(lambda: len(sim.all_connections()) == 2, timeout=5, what="reconnect")
        second = sim.all_connections()[1]
        sim.wait_for(lambda: len(second.subscriptions) == 1, timeout=5, what="replay")
        replayed = [m["params"] for m in second.received if m.get("method") == "subscribe"]
        assert replayed == [{"crypto_ids": [1]}]
        assert client.stats()["placed_subscriptions"] == 1
    finally:
        client.close()


def test_close_before_start_is_quiet_and_final(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(sim.url)
    client.close()
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert sim.handshakes == []
    with pytest.raises(cmcsync.ClientClosedError):
        client.start()


def test_ping_returns_the_round_trip_of_a_ping_the_server_answered(
    sim: Simulator, client: cmcsync.Client
) -> None:
    client.start()
    client.wait_connected(5)
    pongs, pings = client.stats()["pongs"], client.stats()["pings_sent"]
    first = client.ping()
    second = client.ping(timeout=2)
    assert isinstance(first, float) and first > 0
    assert isinstance(second, float) and second > 0
    requests = sent_by_client(sim, "ping")
    assert [sorted(r) for r in requests] == [["id", "method"], ["id", "method"]]
    assert len({r["id"] for r in requests}) == 2, "each ping has its own id"
    # ping() returns once the pong is read and counted; its pings are counted too.
    assert client.stats()["pongs"] == pongs + 2
    assert client.stats()["pings_sent"] == pings + 2


def test_ping_needs_an_open_connection_and_does_not_start_the_client(sim: Simulator) -> None:
    client = make_client(sim.url)
    with pytest.raises(cmcsync.ConnectionFailedError, match="no connection is open"):
        client.ping()
    assert client.state is cmcsync.ClientState.NEW
    client.close()
    with pytest.raises(cmcsync.ClientClosedError):
        client.ping()
    assert sim.handshakes == []


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "5", None])
def test_ping_timeout_must_be_a_positive_number(client: cmcsync.Client, timeout: object) -> None:
    with pytest.raises(cmcsync.ConfigError, match="ping timeout must be a positive") as info:
        client.ping(timeout)  # type: ignore[arg-type]
    assert info.value.param == "timeout"


def test_ping_times_out_when_no_pong_comes(sim: Simulator, client: cmcsync.Client) -> None:
    client.start()
    client.wait_connected(5)
    sim.silence(True)
    try:
        started = time.monotonic()
        with pytest.raises(cmcsync.CmcsyncTimeoutError, match=r"no pong within 0\.3 s"):
            client.ping(timeout=0.3)
        waited = time.monotonic() - started
    finally:
        sim.silence(False)
    # The deadline is kept: neither cut short nor overrun (with room for a loaded machine).
    assert 0.3 <= waited < 5.3
    # The late pong answers nobody; the connection is fine and the next ping gets its own.
    assert client.ping(timeout=5) > 0
    assert len(sent_by_client(sim, "ping")) == 2
    assert client.stats()["reconnects"] == 0


@pytest.mark.parametrize(
    ("ending", "error"),
    [("drop", cmcsync.ConnectionFailedError), ("close", cmcsync.ClientClosedError)],
)
def test_a_waiting_ping_fails_at_once_when_its_connection_ends(
    sim: Simulator, client: cmcsync.Client, ending: str, error: type[Exception]
) -> None:
    client.start()
    client.wait_connected(5)
    sim.silence(True)
    outcome: list[BaseException] = []

    def ping() -> None:
        try:
            client.ping(timeout=60)
        except cmcsync.CmcsyncError as exc:
            outcome.append(exc)

    sent = client.stats()["frames_sent"]
    waiter = threading.Thread(target=ping, name="test-ping")
    waiter.start()
    try:
        wait_until(lambda: client.stats()["frames_sent"] > sent, timeout=5)
        if ending == "drop":
            (dropped,) = sim.connections()
            sim.drop_all()
            # Held bytes of a dropped connection must not be released into it.
            sim.wait_for(lambda: dropped.closed, what="the dropped connection closed")
        else:
            client.close()
        waiter.join(10)
        assert not waiter.is_alive(), "ping() still waiting after its connection ended"
    finally:
        sim.silence(False)
    assert len(outcome) == 1 and type(outcome[0]) is error, outcome


def price_push(size: int) -> str:
    """A price push for crypto id 1 of exactly ``size`` bytes, padded in an extra data key."""
    push = {"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "ts": 1}
    text = json.dumps({**push, "data": {"cid": 1, "p": 2.5, "pad": ""}})
    return text.replace('"pad": ""', '"pad": "' + "x" * (size - len(text)) + '"')


def padded_events(recorder: EventRecorder) -> list[int]:
    """The pad length of every padded event delivered, in order."""
    return [len(e.extra["pad"]) for e in recorder.events if "pad" in e.extra]


def test_max_frame_bytes_refuses_larger_frames_and_the_client_comes_back(
    sim: Simulator, recorder: EventRecorder
) -> None:
    limit = 4096
    pad = len(price_push(limit)) - len(price_push(0))
    client = make_client(sim.url, recorder, max_frame_bytes=limit)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        first = sim.connections()[0]
        sim.push(price_push(limit), conn=first)
        recorder.wait_for(lambda: padded_events(recorder) == [pad])

        sim.push(price_push(limit + 1), conn=first)
        disconnect = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_disconnect"))[0]
        assert (disconnect["code"], disconnect["will_reconnect"]) == (1009, True)
        wait_until(lambda: client.stats()["malformed_by_kind"] == {"too_large": 1}, timeout=5)
        too_large = [
            c["error"]
            for c in recorder.hook_calls("cmcsync_on_error")
            if isinstance(c["error"], cmcsync.ProtocolError)
        ]
        assert [e.kind for e in too_large] == ["too_large"]
        assert f"max_frame_bytes={limit}" in str(too_large[0])

        # Reconnected, subscribed again, and data flows on the new connection.
        sim.wait_for(lambda: [c is first for c in sim.connections()] == [False], what="back")
        second = sim.connections()[0]
        sim.wait_for(lambda: PRICE in {channel for channel, _ in second.subscriptions})
        sim.push(price_push(200), conn=second)
        recorder.wait_for(lambda: padded_events(recorder) == [pad, 200 - len(price_push(0))])
        assert client.stats()["reconnects"] == 1
    finally:
        client.close()


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "4096", None])
def test_max_frame_bytes_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(
        cmcsync.ConfigError, match="max_frame_bytes must be a positive integer"
    ) as info:
        cmcsync.Client(
            api_key=KEY,
            url="ws://127.0.0.1:9/v1",
            autoload=False,
            max_frame_bytes=value,  # type: ignore[arg-type]
        )
    assert info.value.param == "max_frame_bytes"


def test_a_push_for_a_subscription_no_longer_wanted_is_delivered_and_counted(
    recorder: EventRecorder,
) -> None:
    def push(ts: int) -> str:
        message = {"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "ts": ts}
        message["data"] = {"cid": 1, "p": 1.5}
        return json.dumps(message)

    client = cmcsync.Client(
        api_key="unused", url="ws://127.0.0.1:1/v1", autoload=False, plugins=[recorder]
    )
    try:
        client.start(connect=False)
        client.subscribe(PRICE, crypto_ids=[1], wait=False)
        client.feed([push(1)])
        assert client.stats()["unmatched_events"] == 0
        client.unsubscribe(PRICE, crypto_ids=[1], wait=False)
        client.feed([push(2)])  # crossed the unsubscribe on the wire
        assert client.stats()["unmatched_events"] == 1
        client.subscribe(PRICE, crypto_ids=[1], wait=False)
        client.feed([push(3)])
        assert client.stats()["unmatched_events"] == 1
        recorder.wait_for_events(3, timeout=5)
        assert [event.ts for event in recorder.events] == [1, 2, 3]
    finally:
        client.close()
