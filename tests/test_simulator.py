"""The simulator as a CMC server: handshake, requests, acks, errors, faults and records.

Driven by a raw websocket-client socket, never by cmcsync's client, so these tests pin the
protocol the simulator speaks, not what the client expects.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket

from cmcsync.exceptions import ConfigError
from cmcsync.testing import Simulator

KEY = "test-key"
HEADER = "X-CMC_PRO_API_KEY"
PRICE = "market@crypto_latest_price"
KLINE = "onchain@kline"
BSC_USDC = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
NO_ID = object()


class Client:
    """A raw socket plus the helpers the tests share."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    def send(self, message: Any) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())  # type: ignore[no-any-return]

    def reply(self) -> dict[str, Any]:
        """The next frame that is not a data push."""
        while True:
            message = self.next()
            if message["type"] != "data":
                return message

    def call(self, **request: Any) -> dict[str, Any]:
        self.send(request)
        return self.reply()

    def close_frame(self) -> tuple[int, str]:
        self.ws.settimeout(5)
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode()


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    sims: list[Simulator] = []

    def make(**kwargs: Any) -> Simulator:
        kwargs.setdefault("seed", 5)
        kwargs.setdefault("speed", 500)
        sims.append(Simulator(**kwargs).start())
        return sims[-1]

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def server(make_sim: Callable[..., Simulator]) -> Simulator:
    """A simulator with no generated data, so every frame is a reply."""
    return make_sim(feeds=False)


@pytest.fixture
def connect(make_sim: Callable[..., Simulator]) -> Iterator[Callable[..., Client]]:
    """Open raw sockets (closed before the simulators stop)."""
    opened: list[websocket.WebSocket] = []

    def open_(
        sim: Simulator, key: str | None = KEY, url: str | None = None, welcome: bool = True
    ) -> Client:
        headers = {HEADER: key} if key else {}
        ws = websocket.create_connection(url or sim.url, header=headers, timeout=5)
        opened.append(ws)
        client = Client(ws)
        if welcome:
            assert client.next() == {"type": "welcome", "ping_interval_ms": 10000}
        return client

    yield open_
    for ws in opened:
        ws.close(timeout=1)
        ws.shutdown()  # close() skips the socket once a close frame was read


def assert_error(
    message: dict[str, Any], code: int, fragment: str = "", req_id: object = NO_ID
) -> None:
    assert message["type"] == "error"
    if req_id is NO_ID:
        assert "id" not in message
    else:
        assert message["id"] == req_id
    status = message["status"]
    assert ISO_MS.fullmatch(status["timestamp"])
    assert status["error_code"] == str(code)
    assert status["category"] == {1: "AUTH", 2: "PROTOCOL"}.get(code // 1000, "SERVER")
    assert fragment in status.get("error_detail", "")


# -- handshake ------------------------------------------------------------------------------


def test_welcome_then_ping_gets_pong_with_id_and_server_time(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    pong = client.call(id=7, method="ping")
    assert pong.keys() == {"type", "id", "code", "ts"}
    assert (pong["type"], pong["id"], pong["code"]) == ("pong", 7, 0)
    assert abs(pong["ts"] - time.time() * 1000) < 60_000
    assert "id" not in client.call(method="ping")


def test_missing_key_and_wrong_path_are_refused_over_http(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        connect(server, key=None)
    with pytest.raises(websocket.WebSocketBadStatusException) as wrong_path:
        connect(server, url=server.url.replace("/v1", "/v2"))
    assert (missing.value.status_code, wrong_path.value.status_code) == (401, 404)
    assert [(h.status, h.path) for h in server.handshakes] == [(401, "/v1"), (404, "/v2")]
    assert not server.all_connections()


def test_key_in_the_query_string_is_accepted_and_never_recorded(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server, key=None, url=f"{server.url}?CMC_PRO_API_KEY={KEY}")
    assert client.call(method="ping")["type"] == "pong"
    connect(server)
    assert [(h.status, h.path, h.key_source) for h in server.handshakes] == [
        (101, "/v1", "query"),
        (101, "/v1", "header"),
    ]
    assert KEY not in repr(server.handshakes) + repr(server.connections()) + repr(server)


@pytest.mark.parametrize(
    ("key", "code", "reason"),
    [
        ("nope", 4100, "API key invalid"),
        ("disabled", 4101, "API key disabled"),
        ("basic", 4102, "Plan not support WS"),
    ],
)
def test_refused_keys_get_the_upgrade_then_their_close_code(
    make_sim: Callable[..., Simulator],
    connect: Callable[..., Client],
    key: str,
    code: int,
    reason: str,
) -> None:
    sim = make_sim(feeds=False, key_status={"disabled": 4101, "basic": 4102})
    client = connect(sim, key=key, welcome=False)
    assert client.close_frame() == (code, reason)
    sim.wait_for(lambda: sim.all_connections()[0].closed, what="refused connection closed")
    assert sim.all_connections()[0].close_code == code
    assert not sim.connections()
    assert sim.handshakes[0].status == 101


def test_any_key_is_accepted_when_api_keys_is_none(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(feeds=False, api_keys=None)
    assert connect(sim, key="whatever").call(method="ping")["type"] == "pong"


def test_one_connection_over_the_limit_is_closed_4004(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(feeds=False, max_connections=2, api_keys=(KEY, "other"))
    first, _ = connect(sim), connect(sim)
    assert connect(sim, welcome=False).close_frame() == (4004, "Connection limit")
    connect(sim, key="other")  # the limit is per key
    first.ws.close()
    sim.wait_for(lambda: len(sim.connections()) == 2, what="first connection gone")
    connect(sim)  # room again


def test_reject_handshakes_answers_the_next_upgrades_with_that_status(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    statuses = [401, 403, 429, 500]
    for status in statuses:
        server.reject_handshakes(status)
    for status in statuses:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(server)
        assert refused.value.status_code == status
    connect(server)
    assert [h.status for h in server.handshakes] == [*statuses, 101]


def test_no_welcome_when_ping_interval_is_none(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(feeds=False, ping_interval_ms=None)
    client = connect(sim, welcome=False)
    assert client.call(id=1, method="ping")["type"] == "pong"  # the first frame


# -- requests and acks ----------------------------------------------------------------------


def test_subscribe_acks_one_subscription_per_list_element(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    ack = client.call(id=1, method="subscribe", channel=PRICE, params={"crypto_ids": [1, 1027, 1]})
    assert ack == {
        "type": "ack",
        "id": 1,
        "code": 0,
        "msg": "ok",
        "channel": PRICE,
        "sub_count": 2,
        "sub_limit": 100,
    }
    assert server.connections()[0].subscriptions == {
        (PRICE, frozenset({("crypto_ids", 1)})),
        (PRICE, frozenset({("crypto_ids", 1027)})),
    }
    assert "id" not in client.call(method="subscribe", channel=PRICE, params={"crypto_ids": 52})


def test_repeats_are_duplicates_and_partial_repeats_add_the_rest(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    client.call(id=1, method="subscribe", channel=PRICE, params={"crypto_ids": [1, 1027]})
    again = client.call(id=2, method="subscribe", channel=PRICE, params={"crypto_ids": [1027, 1]})
    assert (again["duplicate"], again["sub_count"]) == (True, 2)
    partial = client.call(
        id=3, method="subscribe", channel=PRICE, params={"crypto_ids": ["1027", 52]}
    )
    assert "duplicate" not in partial and partial["sub_count"] == 3


def test_evm_addresses_fold_case_and_base58_does_not(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    evm = {"platform_id": 14, "address": BSC_USDC.upper().replace("0X", "0x"), "interval": "1m"}
    client.call(method="subscribe", channel=KLINE, params=evm)
    assert client.call(method="subscribe", channel=KLINE, params={**evm, "address": [BSC_USDC]})[
        "duplicate"
    ]
    sol = {"platform_id": 16, "address": "GYQQfZTnToken", "interval": "1m"}
    client.call(method="subscribe", channel=KLINE, params=sol)
    ack = client.call(method="subscribe", channel=KLINE, params={**sol, "address": "gyqqfztntoken"})
    assert "duplicate" not in ack and ack["sub_count"] == 3
    addresses = {dict(params)["address"] for _, params in server.connections()[0].subscriptions}
    assert addresses == {BSC_USDC, "GYQQfZTnToken", "gyqqfztntoken"}


def test_unsubscribe_specific_whole_channel_and_all(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    client.call(method="subscribe", channel=PRICE, params={"crypto_ids": [1, 1027, 52]})
    client.call(
        method="subscribe",
        channel=KLINE,
        params={"platform_id": 14, "address": [BSC_USDC], "interval": "1m"},
    )
    ack = client.call(id=3, method="unsubscribe", channel=PRICE, params={"crypto_ids": [1, 74]})
    assert ack == {
        "type": "ack",
        "id": 3,
        "code": 0,
        "msg": "ok",
        "channel": PRICE,
        "sub_count": 3,
        "sub_limit": 100,
    }
    assert (
        client.call(method="unsubscribe", channel=PRICE, params={"crypto_ids": [74]})["sub_count"]
        == 3
    )
    assert client.call(method="unsubscribe", channel=PRICE)["sub_count"] == 1
    assert {c for c, _ in server.connections()[0].subscriptions} == {KLINE}
    everything = client.call(id=9, method="unsubscribe_all")
    assert everything == {
        "type": "ack",
        "id": 9,
        "code": 0,
        "msg": "ok",
        "sub_count": 0,
        "sub_limit": 100,
    }
    assert server.connections()[0].subscriptions == set()


def subscribe(channel: str, **params: Any) -> dict[str, Any]:
    return {"id": 4, "method": "subscribe", "channel": channel, "params": params}


BSC_KLINE = {"platform_id": 14, "address": [BSC_USDC], "interval": "1m"}


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        ("not json", 2201, "not valid JSON"),
        ("[1, 2]", 2201, "JSON object"),
        ({"id": 4, "channel": PRICE}, 2204, "'method'"),
        ({"id": 4, "method": "SUBSCRIBE"}, 2202, "subscribe, unsubscribe"),
        ({"id": 4, "method": "subscribe", "params": {"crypto_ids": [1]}}, 2204, "'channel'"),
        ({"id": 4, "method": "unsubscribe"}, 2204, "'channel'"),
        (subscribe("market@kline"), 2301, "market@kline"),
        ({"id": 4, "method": "subscribe", "channel": PRICE}, 2401, "'crypto_ids'"),
        (subscribe(KLINE, **{**BSC_KLINE, "interval": None}), 2401, "'interval'"),
        (subscribe(KLINE, **{**BSC_KLINE, "interval": "2m"}), 2402, "1s, 5s, 30s"),
        (subscribe(KLINE, **{**BSC_KLINE, "platform_id": "bsc"}), 2402, "platform_id"),
        (subscribe(KLINE, **{**BSC_KLINE, "address": []}), 2402, "empty"),
        (subscribe(PRICE, crypto_ids=[1, "btc"]), 2402, "crypto_ids"),
        (subscribe(PRICE, crypto_ids=[1.5]), 2402, "crypto_ids"),
        (subscribe(PRICE, crypto_ids=[1], mode="full"), 2402, "'mode'"),
    ],
)
def test_bad_requests_get_their_error_and_the_connection_goes_on(
    server: Simulator, connect: Callable[..., Client], request_: Any, code: int, fragment: str
) -> None:
    client = connect(server)
    client.send(request_)
    req_id = request_.get("id", NO_ID) if isinstance(request_, dict) else NO_ID
    assert_error(client.reply(), code, fragment, req_id)
    assert client.call(method="ping")["type"] == "pong"
    assert server.connections()[0].subscriptions == set()


def test_binary_and_oversized_frames(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(feeds=False, max_message_bytes=200)
    client = connect(sim)
    client.ws.send_binary(b'{"method": "ping"}')
    assert_error(client.reply(), 2201, "binary")
    client.send({"id": 1, "method": "ping", "pad": "x" * 300})
    assert_error(client.reply(), 2203, "limit is 200 bytes")
    assert client.call(method="ping")["type"] == "pong"


def test_a_subscribe_over_the_limit_adds_nothing(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(feeds=False, sub_limit=3)
    client = connect(sim)
    assert (
        client.call(method="subscribe", channel=PRICE, params={"crypto_ids": [1, 2]})["sub_limit"]
        == 3
    )
    assert_error(
        client.call(id=2, method="subscribe", channel=PRICE, params={"crypto_ids": [3, 4]}),
        2303,
        "limit is 3",
        2,
    )
    assert len(sim.connections()[0].subscriptions) == 2
    assert (
        client.call(method="subscribe", channel=PRICE, params={"crypto_ids": [2, 3]})["sub_count"]
        == 3
    )


def test_fail_next_subscribe_refuses_that_many_subscribes(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    server.fail_next_subscribe(2302, "Upgrade your plan.", count=2)
    params = {"crypto_ids": [1]}
    for req_id in (1, 2):
        refused = client.call(id=req_id, method="subscribe", channel=PRICE, params=params)
        assert_error(refused, 2302, "Upgrade your plan.", req_id)
        assert refused["status"]["error_message"] == "Channel not available on your plan."
    assert client.call(method="ping")["type"] == "pong"  # pings are not subscribes
    assert client.call(method="subscribe", channel=PRICE, params=params)["type"] == "ack"
    server.fail_next_subscribe(5001)
    assert (
        "error_detail"
        not in client.call(method="subscribe", channel=PRICE, params=params)["status"]
    )


# -- faults ---------------------------------------------------------------------------------


def test_close_all_and_close_one(server: Simulator, connect: Callable[..., Client]) -> None:
    first, second, third = connect(server), connect(server), connect(server)
    server.connections()[0].close(4000, "just you")
    assert first.close_frame() == (4000, "just you")
    server.wait_for(lambda: len(server.connections()) == 2, what="one closed")
    server.close_all(1012, "restart")
    assert second.close_frame() == third.close_frame() == (1012, "restart")
    server.wait_for(lambda: all(c.closed for c in server.all_connections()), what="all closed")
    assert [c.close_code for c in server.all_connections()] == [4000, 1012, 1012]
    with pytest.raises(ValueError, match="999"):
        server.close_all(999)


def test_drop_all_cuts_the_socket_without_a_close_frame(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    server.drop_all()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        client.next()
    server.wait_for(lambda: server.all_connections()[0].closed, what="dropped")
    assert server.all_connections()[0].close_code == 1006


def test_silence_stops_pongs_of_both_kinds_until_it_ends(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    client = connect(server)
    server.silence()
    client.ws.ping(b"beat")
    client.send({"id": 1, "method": "ping"})
    client.ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        client.ws.recv_data_frame(True)
    late = connect(server, welcome=False)  # upgrades are still answered...
    with pytest.raises(websocket.WebSocketTimeoutException):
        late.next(timeout=0.2)  # ...but nothing follows
    server.silence(False)
    client.ws.settimeout(5)
    assert client.ws.recv_data_frame(True)[1].data == b"beat"
    assert client.reply()["type"] == "pong"
    assert late.next()["type"] == "welcome"


def test_silence_stops_data_and_sees_a_client_leave(
    make_sim: Callable[..., Simulator], connect: Callable[..., Client]
) -> None:
    sim = make_sim(speed=1000)
    client = connect(sim)
    client.call(method="subscribe", channel=PRICE, params={"crypto_ids": [1]})
    client.next()  # data flows
    sim.silence()
    deadline = time.monotonic() + 3
    received = 0
    while True:  # drain what was written before the silence, until a quiet gap
        try:
            client.next(timeout=0.3)
            received += 1
        except websocket.WebSocketTimeoutException:
            break
        assert time.monotonic() < deadline, "data kept coming while silent"
    conn = sim.connections()[0]
    client.ws.close(timeout=0.2)
    sim.wait_for(lambda: conn.closed, what="the client's leaving seen while silent")
    assert conn.close_code == 1000


def test_ending_a_silence_right_after_a_drop_discards_what_was_held(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    # The dropped connection stays listed as open for a few turns of the simulator's loop,
    # and silence(False) lands in that window in some rounds only: 200 make a miss unlikely.
    for round_ in range(200):
        client = connect(server)
        assert client.call(id=1, method="ping")["type"] == "pong"
        (conn,) = server.connections()
        server.silence()
        client.send({"id": 2, "method": "ping"})  # held: a silent server reads nothing
        server.drop_all()
        server.silence(False)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            client.next()
        server.wait_for(lambda conn=conn: conn.closed, what=f"round {round_}: drop seen")
        assert conn.close_code == 1006
        assert [message["id"] for message in conn.received] == [1]
    assert connect(server).call(id=3, method="ping")["type"] == "pong"  # the silence ended


def test_push_sends_raw_frames_as_given(server: Simulator, connect: Callable[..., Client]) -> None:
    first, second = connect(server), connect(server)
    server.push("not json {", server.connections()[0])
    server.push(b"\x00\x01")
    server.push_data(PRICE, {"crypto_ids": 1}, {"cid": 1, "p": 2.5}, ts=123)
    assert first.ws.recv() == "not json {"
    for client in (first, second):
        assert client.ws.recv() == b"\x00\x01"
        assert client.next() == {
            "type": "data",
            "channel": PRICE,
            "params": {"crypto_ids": 1},
            "data": {"cid": 1, "p": 2.5},
            "ts": 123,
        }
    sent = server.connections()[0].sent
    assert sent[1:3] == [{"_raw": "not json {"}, {"_raw": "\x00\x01", "_binary": True}]
    with pytest.raises(TypeError):
        server.push(42)  # type: ignore[arg-type]


def test_received_and_sent_are_recorded_in_order(
    server: Simulator, connect: Callable[..., Client]
) -> None:
    first, second = connect(server), connect(server)
    first.call(id=1, method="ping")
    second.call(id=2, method="subscribe", channel=PRICE, params={"crypto_ids": [1]})
    first.send("hello")
    first.reply()
    assert server.received() == [
        {"id": 1, "method": "ping"},
        {"id": 2, "method": "subscribe", "channel": PRICE, "params": {"crypto_ids": [1]}},
        {"_raw": "hello"},
    ]
    one, two = server.connections()
    assert [m.get("id") for m in one.received] == [1, None]
    assert [m["type"] for m in one.sent] == ["welcome", "pong", "error"]
    assert [m["type"] for m in two.sent] == ["welcome", "ack"]


# -- lifecycle ------------------------------------------------------------------------------


def _sim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cmcsync-simulator"]


def test_stop_closes_1001_joins_its_thread_and_is_idempotent(
    connect: Callable[..., Client],
) -> None:
    sim = Simulator(feeds=False).start()
    assert _sim_threads()
    client = connect(sim)
    started = time.monotonic()
    sim.stop(timeout=5)  # the client does not read: its closing handshake never ends
    assert time.monotonic() - started < 4
    assert not _sim_threads()
    sim.stop()
    assert client.close_frame()[0] == 1001
    with pytest.raises(RuntimeError, match="not running"):
        sim.push({"type": "data"})
    with pytest.raises(RuntimeError, match="already started"):
        sim.start()


def test_port_zero_picks_a_free_port_and_url_names_it() -> None:
    with Simulator(feeds=False) as sim:
        assert sim.port > 0
        assert sim.url == f"ws://127.0.0.1:{sim.port}/v1"


def test_wait_for_names_what_did_not_happen(server: Simulator) -> None:
    with pytest.raises(TimeoutError, match="a connection"):
        server.wait_for(
            lambda: server.connections()[0] is not None, timeout=0.1, what="a connection"
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"speed": 0},
        {"sub_limit": 0},
        {"max_connections": 0},
        {"ping_interval_ms": 0},
        {"key_status": {"k": 999}},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Simulator(**kwargs)


def test_bad_fault_arguments_are_refused(server: Simulator) -> None:
    with pytest.raises(ConfigError):
        server.reject_handshakes(200)
    with pytest.raises(ConfigError):
        server.fail_next_subscribe(2302, count=0)
