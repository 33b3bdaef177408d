"""Security: the key kept secret, TLS on by default, no plain ws:// off this machine, and
hostile frames (huge, deeply nested) that cost neither the reader thread nor unbounded memory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import websocket

import cmcsync
from cmcsync.testing import EventRecorder, Simulator
from tests._proxy import (
    PRICE,
    ConnectProxy,
    Relay,
    subscribe_mix,
    until,
    wait_flowing,
    wait_replayed,
)
from tests._rawserver import upgrade
from tests.conftest import KEY, make_client

FAST = cmcsync.Backoff(base=0.01, cap=0.05, long_base=0.1)


def secret(kind: str) -> str:
    """A fresh secret: found in any output only if it leaked there."""
    return f"{kind}-{uuid.uuid4().hex}"


class Capture(logging.Handler):
    """Keeps every record, formatted with its traceback, from every logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.format(record))


# The simulator plays CMC's server, which is given the key by design; its own debug log (the
# websockets server's request dump) is checked by a test of its own.
_SERVER_LOGGER = "cmcsync.testing.simulator"


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Every logger at DEBUG, websocket-client's trace on (it dumps handshake headers)."""
    handler = Capture()
    handler.addFilter(lambda record: not record.name.startswith(_SERVER_LOGGER))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    websocket.enableTrace(True, handler=handler)
    try:
        yield handler
    finally:
        websocket.enableTrace(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(vars(exc))


def test_no_secret_is_found_in_logs_reprs_errors_stats_or_recordings(
    capture: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, wrong, in_query, password = (
        secret("sk-key"),
        secret("sk-wrong"),
        secret("sk-query"),
        secret("pw"),
    )
    secrets = [key, wrong, in_query, password]
    seen: list[str] = []
    tapped: list[str] = []
    errors: list[BaseException] = []
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    recorder = EventRecorder()
    with Simulator(api_keys=(key,), ping_interval_ms=200, speed=200, seed=41) as sim:
        with ConnectProxy(credentials=("user", password)) as proxy:
            client = cmcsync.Client(
                api_key=key,
                url=f"{sim.url}?CMC_PRO_API_KEY={in_query}",
                autoload=False,
                plugins=[recorder],
                backoff=FAST,
                timeouts=cmcsync.Timeouts(ack=0.3, pong=0.4, close=2),
                proxy=f"http://user:{password}@127.0.0.1:{proxy.port}",
            )
            try:
                client.tap_frames(lambda _at, frame: tapped.append(str(frame)))
                subscribe_mix(client)
                sim.push("not json")
                sim.push(b"\x00binary")
                sim.push_data("onchain@nothing", {"x": 1}, {"y": 2})
                for fault in (lambda: sim.close_all(1012), sim.drop_all):
                    first = sim.connections()[0]
                    fault()
                    sim.wait_for(lambda first=first: first.closed)
                    wait_replayed(sim, client)
                sim.reject_handshakes(500)
                first = sim.connections()[0]
                sim.silence(True)
                try:
                    client.subscribe(PRICE, crypto_ids=[825])
                except cmcsync.CmcsyncTimeoutError as exc:
                    errors.append(exc)
                sim.wait_for(lambda: first.closed)
                sim.silence(False)
                wait_replayed(sim, client)
                wait_flowing(recorder)
                sim.fail_next_subscribe(2302)
                try:
                    client.subscribe(PRICE, crypto_ids=[74])
                except cmcsync.SubscriptionError as exc:
                    errors.append(exc)
                seen += [
                    repr(client),
                    str(client),
                    json.dumps(client.stats()),
                    repr(client.stats()),
                ]
                seen += [repr(conn) for conn in client._engine.connections]
                seen += [repr(client.subscriptions())]
            finally:
                client.close()
            seen += [repr(client), json.dumps(client.stats())]

        # A refused key, a refused handshake, and a host that cannot be reached.
        for bad_key, url in ((wrong, sim.url), (key, sim.url), (key, "ws://127.0.0.1:9/v1")):
            if bad_key == key and url == sim.url:
                sim.reject_handshakes(401)
            failing = cmcsync.Client(
                api_key=bad_key,
                url=url,
                autoload=False,
                backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=2),
            )
            try:
                failing.start()
                with pytest.raises(cmcsync.ConnectionFailedError) as info:
                    failing.wait(5)
                errors.append(info.value)
                seen += [repr(failing), json.dumps(failing.stats())]
            finally:
                failing.close()
    with pytest.raises(cmcsync.ConfigError) as config_error:
        cmcsync.Client(api_key=key, url=f"ws://stream.example.test/v1?CMC_PRO_API_KEY={key}")
    errors.append(config_error.value)

    seen += [describe(exc) for exc in errors]
    seen += [repr(event) for event in recorder.events]
    seen += [repr(kwargs) for _, kwargs in recorder.calls]
    seen += [describe(kw["error"]) for kw in recorder.hook_calls("cmcsync_on_error")]
    seen += capture.lines
    seen += tapped
    # What actually happened, so the search below has something to search.
    assert [type(e).__name__ for e in errors] == [
        "CmcsyncTimeoutError",
        "SubscriptionError",
        "AuthError",
        "AuthError",
        "GaveUpError",
        "ConfigError",
    ]
    assert {"websocket", "cmcsync.connection", "cmcsync.client"} <= capture.names
    assert any("X-CMC_PRO_API_KEY: [redacted]" in line for line in capture.lines)
    assert any("Proxy-Authorization: [redacted]" in line for line in capture.lines)
    assert len(tapped) > 20 and len(proxy.tunnels) >= 3
    for text in seen:
        for value in secrets:
            assert value not in text, f"a secret leaked into: {text[:300]}"


def test_no_secret_is_found_in_a_cmcsync_record_session(tmp_path: Path) -> None:
    key, wrong = secret("sk-key"), secret("sk-wrong")
    out = tmp_path / "frames.jsonl"
    env = {**os.environ, "CMC_PRO_API_KEY": key}
    with Simulator(api_keys=(key,), speed=200, seed=42) as sim:
        common = ["--url", sim.url, "--log-level", "debug", "--timeout", "10"]
        recorded = subprocess.run(
            [sys.executable, "-m", "cmcsync", "record", str(out), "crypto_latest_price",
             "--crypto-ids", "1,1027", "--count", "10", *common],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        refused = subprocess.run(
            [sys.executable, "-m", "cmcsync", "record", str(tmp_path / "no.jsonl"),
             "crypto_latest_price", "--crypto-ids", "1", "--api-key", wrong, *common],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    assert refused.returncode == 3, refused.stderr
    frames = out.read_text()
    assert frames.count('"frame"') >= 10
    for text in (frames, recorded.stdout, recorded.stderr, refused.stdout, refused.stderr):
        assert key not in text and wrong not in text


def test_the_simulator_debug_log_does_not_show_the_key() -> None:
    key = secret("sk-key")
    handler = Capture()
    logger = logging.getLogger(_SERVER_LOGGER)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with Simulator(api_keys=(key,), feeds=False) as sim:
            client = cmcsync.Client(api_key=key, url=sim.url, autoload=False)
            try:
                client.subscribe(PRICE, crypto_ids=[1])
            finally:
                client.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert handler.lines
    assert not [line for line in handler.lines if key in line]


# --- TLS and plain ws:// ---------------------------------------------------------------------


def test_tls_verification_is_on_by_default() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        with Relay(sim.port, tls=context) as relay:
            client = make_client(
                f"wss://127.0.0.1:{relay.port}/v1",
                backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=1),
            )
            try:
                client.start()
                with pytest.raises(cmcsync.GaveUpError, match=r"TLS certificate .* not accepted"):
                    client.wait(5)
            finally:
                client.close()
        assert sim.handshakes == [], "the key was never sent"
        assert relay.tls_failures


@pytest.mark.parametrize(
    "url",
    [
        "ws://pro-stream.coinmarketcap.com/v1",
        "ws://10.1.2.3/v1",
        "ws://127.0.0.1.nip.io/v1",
        "ws://localhost.example.test/v1",
        "ws://[::ffff:10.1.2.3]:8765/v1",
        "ws://[2001:db8::1]/v1",
    ],
)
def test_plain_ws_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(cmcsync.ConfigError, match="use wss:// or pass allow_insecure=True") as info:
        cmcsync.Client(api_key=KEY, url=url, autoload=False)
    assert info.value.param == "url"
    # Explicitly allowed, it builds (and is never started here: no traffic leaves).
    client = cmcsync.Client(api_key=KEY, url=url, autoload=False, allow_insecure=True)
    client.close()


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:1/v1", "ws://localhost:1/v1", "ws://[::1]:1/v1", "ws://127.8.9.10/v1"],
)
def test_plain_ws_to_this_machine_is_allowed(url: str) -> None:
    cmcsync.Client(api_key=KEY, url=url, autoload=False).close()


def test_urls_in_messages_lose_their_query_and_credentials() -> None:
    from cmcsync._connection import redact_url

    assert redact_url("wss://u:pw@h.example:443/v1?CMC_PRO_API_KEY=x#f") == "wss://h.example:443/v1"
    assert redact_url("ws://[::1]:8765/v1?k=v") == "ws://[::1]:8765/v1"
    assert "x" not in redact_url("ws://h:port-x/v1")


# --- hostile frames --------------------------------------------------------------------------

LIMIT = 1 << 20


def data_frame(padding: int) -> str:
    """A valid price push whose payload carries ``padding`` bytes of string."""
    head = {"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "ts": 1}
    text = json.dumps({**head, "data": {"cid": 1, "p": 2.5, "pad": ""}})
    return text.replace('"pad": ""', '"pad": "' + "x" * padding + '"')


def malformed(client: cmcsync.Client) -> dict[str, int]:
    return client.stats()["malformed_by_kind"]  # type: ignore[no-any-return]


def test_a_frame_just_under_the_limit_is_delivered(sim: Simulator, recorder: EventRecorder) -> None:
    client = make_client(sim.url, recorder)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        frame = data_frame(0)
        sim.push(data_frame(LIMIT - len(frame)))
        event = recorder.wait_for(
            lambda: next((e for e in recorder.events if "pad" in e.extra), None)
        )
        assert len(event.extra["pad"]) == LIMIT - len(frame)
        assert client.stats()["reconnects"] == 0
    finally:
        client.close()


def test_a_frame_over_the_limit_closes_with_1009_and_the_session_is_restored(
    sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder)
    try:
        subscribe_mix(client)
        first = sim.connections()[0]
        frame = data_frame(0)
        sim.push(data_frame(LIMIT - len(frame) + 1), conn=first)
        sim.wait_for(lambda: first.closed, what="the connection closed")
        # The client closes with 1009; the server sees it unless its own write of the big
        # frame fails first (then the connection just ends: 1006).
        assert first.close_code in (1009, 1006)
        disconnect = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_disconnect"))[0]
        assert (disconnect["code"], disconnect["will_reconnect"]) == (1009, True)
        wait_replayed(sim, client)
        wait_flowing(recorder)
        # Counted and reported on the reader's and dispatcher's time, not the socket's.
        until(sim, lambda: malformed(client).get("too_large") == 1)
        recorder.wait_for(
            lambda: any(
                getattr(kw["error"], "kind", None) == "too_large"
                for kw in recorder.hook_calls("cmcsync_on_error")
            )
        )
        assert not any("pad" in e.extra for e in recorder.events)
    finally:
        client.close()


def text_frame(payload: str | bytes) -> bytes:
    """An unmasked text frame, as a server sends it."""
    body = payload.encode() if isinstance(payload, str) else payload
    if len(body) < 126:
        return bytes([0x81, len(body)]) + body
    if len(body) < 1 << 16:
        return bytes([0x81, 126]) + len(body).to_bytes(2, "big") + body
    return bytes([0x81, 127]) + len(body).to_bytes(8, "big") + body


class RawServer:
    """A WebSocket server of a few lines: answers one upgrade, writes ``chunks`` as given,
    then reads until the client closes, keeping the code of the client's close frame."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.close_code: int | None = None
        self.closed = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="test-rawserver")

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(10)
        self.listener.close()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        with sock:
            sock.settimeout(5)
            upgrade(sock)
            for chunk in self.chunks:
                sock.sendall(chunk)
            self._read_until_closed(sock)
        self.closed.set()

    def _read_until_closed(self, sock: socket.socket) -> None:
        sock.settimeout(0.05)
        received = b""
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            received += data
            # Client frames are masked: 2 bytes of header, 4 of mask, then the payload.
            while len(received) >= 6 and len(received) >= 6 + (received[1] & 0x7F):
                size = received[1] & 0x7F
                mask, body = received[2:6], received[6 : 6 + size]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
                if received[0] & 0x0F == 0x8 and len(payload) >= 2:
                    self.close_code = int.from_bytes(payload[:2], "big")
                    return
                received = received[6 + size :]


def test_a_huge_frame_is_refused_from_its_header_before_its_payload_is_read() -> None:
    # A text frame announcing 1 TiB, of which only 4 KiB ever come: a client that reads the
    # payload before judging its size would wait for ever (or run out of memory first).
    header = bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big")
    with RawServer(header + b"x" * 4096) as server:
        client = make_client(
            f"ws://127.0.0.1:{server.port}/v1",
            backoff=cmcsync.Backoff(base=5, cap=10),
            liveness=cmcsync.Liveness(enabled=False),
        )
        try:
            client.start()
            assert server.closed.wait(5), "the client never gave up on the huge frame"
            assert server.close_code == 1009
            deadline = time.monotonic() + 5
            while malformed(client).get("too_large") != 1 and time.monotonic() < deadline:
                server.closed.wait(0.02)
            assert malformed(client).get("too_large") == 1
        finally:
            client.close()


def test_deeply_nested_json_is_skipped_and_the_reader_goes_on(recorder: EventRecorder) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    hostile = [
        deep,
        data_frame(0).replace('"pad": ""', '"pad": ' + deep),
        '{"type": "data", "x": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001,
        data_frame(0).replace('"p": 2.5', '"p": ' + "9" * 100_000),
    ]
    after = data_frame(0).replace('"ts": 1', '"ts": 2')
    with RawServer(*(text_frame(f) for f in [*hostile, after])) as server:
        client = make_client(
            f"ws://127.0.0.1:{server.port}/v1",
            recorder,
            liveness=cmcsync.Liveness(enabled=False),
        )
        try:
            client.start()
            (event,) = recorder.wait_for_events(1)
            assert event.ts == 2, "the frame after the hostile ones is delivered"
            assert malformed(client) == {"not_json": 4}
            assert client.stats()["reconnects"] == 0
            assert client.connected
        finally:
            client.close()
        assert server.close_code == 1000


def test_a_price_beyond_any_float_decodes_as_infinity(recorder: EventRecorder) -> None:
    frames = [
        data_frame(0).replace('"p": 2.5', '"p": 1e999999999').replace('"ts": 1', '"ts": 3'),
    ]
    with RawServer(*(text_frame(f) for f in frames)) as server:
        floats = make_client(
            f"ws://127.0.0.1:{server.port}/v1", recorder, liveness=cmcsync.Liveness(enabled=False)
        )
        try:
            floats.start()
            (event,) = recorder.wait_for_events(1)
            assert event.price == float("inf")
        finally:
            floats.close()


def _deepest_parsable(prefix: str, suffix: str) -> tuple[int, Any]:
    """Parse ``prefix + "[" * n + "1" + "]" * n + suffix`` for the largest ``n`` json.loads
    allows on a fresh thread, like a reader thread's; return ``n`` and the parsed value."""
    found: dict[str, Any] = {}

    def probe() -> None:
        low, high = 1, sys.getrecursionlimit()
        while low < high:
            middle = (low + high + 1) // 2
            try:
                json.loads(prefix + "[" * middle + "1" + "]" * middle + suffix)
                low = middle
            except RecursionError:
                high = middle - 1
        found["depth"] = low
        found["value"] = json.loads(prefix + "[" * low + "1" + "]" * low + suffix)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return found["depth"], found["value"]


def _on_a_thread(work: Callable[[], object]) -> object:
    """Run ``work`` on a fresh thread, like the reader and dispatcher threads; return what it
    returned or raised."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test to judge
            out["result"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["result"]


def test_a_push_nested_as_deep_as_the_parser_allows_is_refused_by_the_decoder() -> None:
    from cmcsync._codec import Codec
    from cmcsync.channels import get_channel

    # The parser sees the whole push, so the deepest value a push can carry is the deepest
    # one that still parses inside its envelope and payload.
    envelope = json.dumps({"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "ts": 1})
    depth, frame = _deepest_parsable(envelope[:-1] + ', "data": {"cid": 1, "p": 1, "x": ', "}}")
    assert depth > 500
    codec = Codec()
    error = _on_a_thread(
        lambda: codec.decode(get_channel(PRICE), frame["params"], frame["data"], frame["ts"])
    )
    assert isinstance(error, cmcsync.DecodeError), error
    assert error.kind == "too_deep"
    assert "key 'x'" in str(error)


def test_an_event_nested_as_deep_as_the_decoder_allows_can_be_written_as_json() -> None:
    from cmcsync._codec import MAX_EXTRA_DEPTH, Codec
    from cmcsync.channels import get_channel
    from cmcsync.cli._output import event_record
    from cmcsync.storage import dumps

    depth = MAX_EXTRA_DEPTH
    deep = "[" * depth + "1" + "]" * depth
    frame = json.loads(data_frame(0).replace('"pad": ""', '"x": ' + deep))
    codec = Codec()
    event = codec.decode(get_channel(PRICE), frame["params"], frame["data"], frame["ts"])

    def write() -> tuple[str, str]:
        # The writers of `cmcsync stream --format jsonl` and of the storage plugins.
        return json.dumps(event_record(event, codec)), dumps(event.extra)

    written = _on_a_thread(write)
    assert isinstance(written, tuple), written
    line, extra = written
    assert line.endswith('"extra": {"x": ' + deep + "}}}")
    assert extra == '{"x":' + deep + "}"


def test_a_push_nested_too_deep_is_reported_and_the_connection_goes_on(
    sim: Simulator, recorder: EventRecorder
) -> None:
    from cmcsync._codec import MAX_EXTRA_DEPTH

    client = make_client(sim.url, recorder)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        nested = "[" * 200 + "]" * 200
        sim.push(data_frame(0).replace('"pad": ""', '"pad": "", "deep": ' + nested))
        sim.push(data_frame(0).replace('"pad": ""', '"pad": "after"'))
        after = recorder.wait_for(
            lambda: next((e for e in recorder.events if e.extra.get("pad") == "after"), None)
        )
        assert after.price == 2.5
        (call,) = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_error"))
        error = call["error"]
        assert isinstance(error, cmcsync.DecodeError)
        assert (error.kind, error.channel) == ("too_deep", PRICE)
        assert f"key 'deep' nests deeper than {MAX_EXTRA_DEPTH} levels" in str(error)
        assert malformed(client) == {"too_deep": 1}
        assert not [e for e in recorder.events if "deep" in e.extra]
        assert client.stats()["reconnects"] == 0
        assert client.connected
    finally:
        client.close()


def test_a_push_whose_params_nest_too_deep_is_reported_and_the_connection_goes_on(
    sim: Simulator, recorder: EventRecorder
) -> None:
    from cmcsync._codec import MAX_EXTRA_DEPTH

    client = make_client(sim.url, recorder)
    try:
        client.subscribe(PRICE, crypto_ids=[1])
        nested = "[" * 200 + "]" * 200
        sim.push(data_frame(0).replace('"crypto_ids": 1', '"crypto_ids": 1, "deep": ' + nested))
        # Shallow but unknown params are still delivered (as unmatched): only depth is refused.
        sim.push(data_frame(0).replace('"crypto_ids": 1', '"crypto_ids": [1]'))
        sim.push(data_frame(0).replace('"pad": ""', '"pad": "after"'))
        recorder.wait_for(lambda: any(e.extra.get("pad") == "after" for e in recorder.events))
        (call,) = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_error"))
        error = call["error"]
        assert isinstance(error, cmcsync.ProtocolError)
        assert error.kind == "too_deep"
        assert f"params nested deeper than {MAX_EXTRA_DEPTH} levels" in str(error)
        assert malformed(client) == {"too_deep": 1}
        assert not [e for e in recorder.events if "deep" in e.params]
        assert [e.params for e in recorder.events if e.params != {"crypto_ids": 1}] == [
            {"crypto_ids": [1]}
        ]
        assert client.stats()["reconnects"] == 0
    finally:
        client.close()
