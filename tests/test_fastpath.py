"""The fast path: frame reading, the frame-size limit, inline dispatch, and equivalence.

- :class:`~cmcsync._frames.FrameReader` cuts the same messages and control frames out of a
  byte stream however it is split, refuses an oversize frame from its header, and rejects
  broken framing; against a raw server, pings are answered, fragments assembled, an oversize
  frame closes the socket with 1009 and the client comes back.
- ``DispatchConfig(mode="inline")`` calls hooks on the reader thread, isolated, one at a
  time, with lifecycle hooks in order, ``events()`` working and keep-alive pings going out
  while a hook is slow.
- The generated decoders give the same events as the general path, and orjson (when
  installed) the same envelopes and errors as the standard library.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cmcsync
from cmcsync import _protocol, events
from cmcsync._codec import Codec
from cmcsync._frames import FrameError, FrameReader, FrameTooLarge
from cmcsync.channels import CHANNELS
from cmcsync.exceptions import ProtocolError
from cmcsync.testing import EventRecorder, Simulator
from tests._rawserver import RawServer, frame
from tests.conftest import KEY, make_client

PRICE = "market@crypto_latest_price"


def reader_over(chunks: list[bytes], limit: int = 1 << 20) -> tuple[FrameReader, list[int]]:
    """A reader whose socket returns ``chunks`` one per recv, then end of stream."""
    asked: list[int] = []
    feed = iter(chunks)

    def recv(n: int) -> bytes:
        asked.append(n)
        return next(feed, b"")

    return FrameReader(recv, limit), asked


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    """``stream`` in pieces of the sizes in ``cuts``, repeated as needed."""
    chunks, position = [], 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if position >= len(stream):
            break
        chunks.append(stream[position : position + cut])
        position += cut
    return chunks


def read_all(reader: FrameReader) -> list[tuple[int, bytes]]:
    """Everything the reader yields, messages and control frames, until the stream ends."""
    out: list[tuple[int, bytes]] = []
    while True:
        batch: list[tuple[int, bytes]] = []
        try:
            control = reader.read(batch, 1000)
        except FrameError:
            return out + batch
        out += batch
        if control is not None:
            out.append(control)


# --- FrameReader ---------------------------------------------------------------------------

_messages = st.lists(
    st.tuples(
        st.sampled_from([1, 2]),
        st.sampled_from([0, 1, 125, 126, 127, 400, 65535, 65536, 70000]),
        st.integers(1, 3),  # fragments
        st.booleans(),  # masked
        st.booleans(),  # a ping after the first fragment
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(messages=_messages, cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=30))
def test_reader_yields_the_same_frames_however_the_stream_is_split(
    messages: list[tuple[int, int, int, bool, bool]], cuts: list[int]
) -> None:
    stream = b""
    expected: list[tuple[int, bytes]] = []
    for number, (opcode, size, parts, masked, ping) in enumerate(messages):
        payload = bytes((number + i) % 251 for i in range(size))
        step = max(1, math.ceil(size / parts))
        pieces = [payload[i : i + step] for i in range(0, size, step)] or [b""]
        for index, piece in enumerate(pieces):
            first, last = index == 0, index == len(pieces) - 1
            mask = b"\x01\x02\x03\x04" if masked else b""
            stream += frame(piece, opcode if first else 0, fin=last, mask=mask)
            if last:
                expected.append((opcode, payload))
            if ping and first:
                # Between two fragments, a control frame comes out before the message.
                stream += frame(b"hb%d" % number, 0x9)
                expected.append((0x9, b"hb%d" % number))
    reader, _ = reader_over(split(stream, cuts))
    assert read_all(reader) == expected


@settings(max_examples=40, deadline=None)
@given(messages=_messages, cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=30))
def test_reader_reading_once_per_call_yields_the_same_frames(
    messages: list[tuple[int, int, int, bool, bool]], cuts: list[int]
) -> None:
    # How the dispatcher thread reads a lent socket: one recv per readable socket, and
    # calls that only cut what is buffered.
    stream = b"".join(
        frame(bytes(size % 256 for _ in range(size)), opcode, mask=b"\x01\x02\x03\x04" * masked)
        for opcode, size, _, masked, _ in messages
    )
    expected = [(opcode, bytes(size % 256 for _ in range(size))) for opcode, size, *_ in messages]
    chunks = split(stream, cuts)
    reader, asked = reader_over(chunks)
    out: list[tuple[int, bytes]] = []
    for _ in range(len(chunks)):
        calls = len(asked)
        batch: list[tuple[int, bytes]] = []
        reader.read(batch, 1000, 0)
        assert len(asked) == calls, "recvs=0 must not read the socket"
        out += batch
        batch = []
        reader.read(batch, 1000, 1)
        assert len(asked) == calls + 1
        out += batch
    assert out == expected


def test_reader_refuses_an_oversize_frame_from_its_header() -> None:
    header = bytes([0x81, 127]) + struct.pack("!Q", 5 << 20)
    before = frame(b'{"type":"pong"}')
    reader, asked = reader_over([before + header + b"x" * 100])
    batch: list[tuple[int, bytes]] = []
    with pytest.raises(FrameTooLarge) as info:
        reader.read(batch, 10)
    assert batch == [(1, b'{"type":"pong"}')]
    assert (info.value.size, info.value.limit) == (5 << 20, 1 << 20)
    assert len(asked) == 1, "the payload must not be read"


def test_reader_refuses_a_fragmented_message_growing_past_the_limit() -> None:
    chunks = [frame(b"a" * 600, 1, fin=False), frame(b"b" * 600, 0, fin=False)]
    reader, _ = reader_over(chunks, limit=1000)
    with pytest.raises(FrameTooLarge):
        reader.read([], 10)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (bytes([0xC1, 0]), "reserved bits"),
        (bytes([0x83, 0]), "unknown opcode"),
        (bytes([0x80, 0]), "continuation"),
        (frame(b"x" * 126, 0x9), "control frame"),
        (frame(b"a", 1, fin=False) + frame(b"b", 1), "new message"),
        (b"", "without a close frame"),
    ],
)
def test_reader_rejects_broken_framing(data: bytes, problem: str) -> None:
    reader, _ = reader_over([data] if data else [])
    with pytest.raises(FrameError, match=problem):
        reader.read([], 10)


def test_reader_hands_over_at_the_batch_limit() -> None:
    reader, _ = reader_over([frame(b"1") * 5])
    batch: list[tuple[int, bytes]] = []
    assert reader.read(batch, 3) is None
    assert len(batch) == 3
    rest: list[tuple[int, bytes]] = []
    reader.read(rest, 3)
    assert len(rest) == 2
    assert (reader.frames, reader.payload_bytes) == (5, 5)


# --- against a raw server ---------------------------------------------------------------------


def _push(cid: int) -> bytes:
    message = {"type": "data", "channel": PRICE, "params": {"crypto_ids": cid}}
    message.update(data={"cid": cid, "p": 1.5}, ts=1)
    return json.dumps(message).encode()


def test_pings_are_answered_and_fragmented_pushes_assembled(
    raw: RawServer, recorder: EventRecorder
) -> None:
    client = make_client(raw.url, recorder)
    try:
        client.start()
        first = _push(1)
        raw.send(
            frame(first[:10], 1, fin=False)
            + frame(b"hb", 0x9)
            + frame(first[10:30], 0, fin=False)
            + frame(first[30:], 0)
            + frame(_push(2), mask=b"abcd")
        )
        raw.wait(lambda: (0xA, b"hb") in raw.received)
        got = recorder.wait_for_events(2)
        assert [e.crypto_id for e in got] == [1, 2]
        assert client.stats()["malformed"] == 0
    finally:
        client.close()


def test_an_oversize_frame_closes_with_1009_and_the_client_comes_back(
    raw: RawServer, recorder: EventRecorder
) -> None:
    client = make_client(raw.url, recorder)
    try:
        client.start()
        # Announces 2 MiB and sends none of it: reading the payload would hang.
        raw.send(frame(_push(1)) + bytes([0x81, 127]) + struct.pack("!Q", 2 << 20))
        raw.wait(lambda: any(op == 0x8 and data[:2] == b"\x03\xf1" for op, data in raw.received))
        raw.wait(lambda: raw.handshakes == 2)
        recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_disconnect"))
        assert recorder.hook_calls("cmcsync_on_disconnect")[0]["code"] == 1009
        errors = [c["error"] for c in recorder.hook_calls("cmcsync_on_error")]
        assert [e.kind for e in errors if isinstance(e, ProtocolError)] == ["too_large"]
        assert client.stats()["malformed_by_kind"] == {"too_large": 1}
        assert [e.crypto_id for e in recorder.events] == [1]
        raw.send(frame(_push(3)))
        recorder.wait_for(lambda: len(recorder.events) == 2)
    finally:
        client.close()


def test_broken_framing_drops_the_connection(raw: RawServer, recorder: EventRecorder) -> None:
    client = make_client(raw.url, recorder)
    try:
        client.start()
        raw.send(bytes([0xC1, 0]))
        raw.wait(lambda: raw.handshakes == 2)
        reason = recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_disconnect"))[0]
        assert "reserved bits" in reason["reason"]
    finally:
        client.close()


# --- inline dispatch ---------------------------------------------------------------------------


class Probe:
    """Records which threads call hooks, and fails if two calls ever overlap."""

    def __init__(self, client_events: threading.Event | None = None) -> None:
        self.threads: set[str] = set()
        self.order: list[str] = []
        self.overlaps = 0
        self._busy = threading.Lock()

    def _enter(self, name: str) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            return
        try:
            self.threads.add(threading.current_thread().name)
            self.order.append(name)
            time.sleep(0.0005)
        finally:
            self._busy.release()

    @cmcsync.hookimpl
    def cmcsync_on_connect(self, client: Any, url: str, reconnect: bool) -> None:
        self._enter("connect")

    @cmcsync.hookimpl
    def cmcsync_on_subscription_state(self, client: Any, channel: str, state: str) -> None:
        self._enter("state")

    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Any) -> None:
        self._enter("event")


class Broken:
    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: Any) -> None:
        raise RuntimeError("broken plugin")


def inline_client(url: str, *plugins: object) -> cmcsync.Client:
    """A client like ``make_client``'s, with these plugins, in inline mode."""
    return cmcsync.Client(
        api_key=KEY,
        url=url,
        autoload=False,
        plugins=plugins,
        timeouts=cmcsync.Timeouts(ack=5.0, pong=0.5, close=2.0),
        backoff=cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1),
        dispatch=cmcsync.DispatchConfig(mode="inline"),
    )


def test_inline_hooks_run_on_the_reader_thread_isolated_and_in_order(
    sim: Simulator, recorder: EventRecorder
) -> None:
    probe = Probe()
    client = inline_client(sim.url, recorder, probe, Broken())
    try:
        client.subscribe(PRICE, crypto_ids=[1, 1027, 52])
        recorder.wait_for_events(30, channel=PRICE)
        assert probe.overlaps == 0
        assert probe.order.index("connect") < probe.order.index("event")
        on_reader = {name for name in probe.threads if name.startswith("cmcsync-reader-")}
        assert on_reader, probe.threads
        assert probe.threads <= on_reader | {"cmcsync-dispatch", "MainThread"}
        failures = recorder.hook_calls("cmcsync_on_plugin_error")
        assert failures and all(f["hook_name"].endswith("crypto_latest_price") for f in failures)
        events_iter = client.events(timeout=5)
        assert next(events_iter).channel == PRICE
    finally:
        client.close()


def test_a_slow_inline_hook_delays_reading_but_pings_still_go_out(
    recorder: EventRecorder,
) -> None:
    release = threading.Event()
    blocked = threading.Event()

    class Slow:
        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any) -> None:
            if not blocked.is_set():
                blocked.set()
                release.wait(5)

    with Simulator(api_keys=(KEY,), speed=200.0, seed=3, ping_interval_ms=100) as sim:
        client = inline_client(sim.url, recorder, Slow())
        try:
            client.subscribe(PRICE, crypto_ids=[1, 1027])
            assert blocked.wait(5)
            pings = sum(m.get("method") == "ping" for m in sim.received())
            sim.wait_for(
                lambda: sum(m.get("method") == "ping" for m in sim.received()) >= pings + 3,
                what="pings while the hook blocks",
            )
            release.set()
            mark = len(recorder.events)
            recorder.wait_for(lambda: len(recorder.events) > mark + 5)
            assert client.stats()["reconnects"] == 0
        finally:
            release.set()
            client.close()


def test_an_inline_hook_can_close_the_client(sim: Simulator) -> None:
    closed = threading.Event()

    class Closer:
        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any, client: Any) -> None:
            client.close()
            closed.set()

    client = inline_client(sim.url, Closer())
    try:
        # Not waiting for the ack: the hook may close the client before subscribe() returns.
        client.subscribe(PRICE, crypto_ids=[1], wait=False)
        assert closed.wait(3), "close() from an inline hook must return promptly"
        assert client.state is cmcsync.ClientState.CLOSED
    finally:
        client.close()


# --- equivalence of the fast paths -----------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.sampled_from(["12", "1.5e3", "x", "", "0x1f", "5m"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["win", "bvn", "ut", "zz"]), st.integers(0, 9), max_size=3),
)
_ROUTED = [
    cls
    for cls in vars(events).values()
    if isinstance(cls, type) and cls.__dict__.get("route_value")
]


def _keys(row_type: type) -> list[str]:
    found = set(events.wire_map(row_type).values())
    for sub in _ROUTED:
        if issubclass(sub, row_type):
            found |= set(events.wire_map(sub).values())
    return sorted(found | {"zz", "5m", "24h"})


_CODECS = {False: Codec(decimal=False), True: Codec(decimal=True)}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), decimal=st.booleans(), channel=st.sampled_from(sorted(CHANNELS)))
def test_generated_decoders_match_the_general_path(
    data: st.DataObject, decimal: bool, channel: str
) -> None:
    row = CHANNELS[channel]
    keys = _keys(row.event_type)
    payload = data.draw(st.dictionaries(st.sampled_from(keys), _values, max_size=len(keys)))
    if data.draw(st.booleans()) and row.event_type is events.TokenMetric:
        payload["sts"] = data.draw(st.lists(st.dictionaries(st.sampled_from(keys), _values)))
    if data.draw(st.booleans()):
        payload["tp"] = data.draw(st.sampled_from([c.route_value for c in _ROUTED]))
    codec = _CODECS[decimal]
    params = {row.list_param: 1}
    envelope = {"channel": channel, "params": params, "data": payload, "ts": 5}
    hook = codec._converter.get_structure_hook(row.event_type)

    def outcome(decode: Any) -> Any:
        try:
            event = decode()
        except Exception as exc:  # noqa: BLE001 - the same error either way, or the same event
            return (type(exc), str(exc))
        return (event, list(event.extra.items()), repr(event))

    general = outcome(lambda: hook(envelope, row.event_type))
    assert outcome(lambda: codec.decode(row, params, payload, 5)) == general


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**25), 10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.text(max_size=5), _json, max_size=5))
def test_the_frame_parser_matches_the_standard_library(body: dict[str, Any]) -> None:
    text = json.dumps({**body, "type": "data"})
    got = _protocol.frame_parser(None)(text.encode())
    assert got == json.loads(text)
    assert repr(got) == repr(json.loads(text)), "same types: an int stays an int"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"type":"data","x":NaN}', None),
        (b'{"type":"data","x":1e400}', None),
        (b'{"type":"data","x":"\\ud800"}', None),
        (b'{"type":"data","x":123456789012345678901234567890}', None),
        (b'{"type":"data","x":-9223372036854775809}', None),
        (b'{"type":"data","x":"\xff"}', "not_utf8"),
        (b"nope", "not_json"),
        (b"[1]", "not_object"),
        (b'{"id":1}', "missing_field"),
    ],
)
def test_edge_frames_parse_as_the_standard_library_does(payload: bytes, kind: str | None) -> None:
    for parse in (_protocol.frame_parser(None), _protocol.parse_frame):
        if kind is None:
            got, want = parse(payload), json.loads(payload.decode())
            assert repr(got) == repr(want)
        else:
            with pytest.raises(ProtocolError) as info:
                parse(payload)
            assert info.value.kind == kind


def test_decimal_mode_keeps_the_wire_digits() -> None:
    parse = _protocol.frame_parser(Decimal)
    message = parse(b'{"type":"data","p":80522.06364821630000001}')
    assert message["p"] == Decimal("80522.06364821630000001")
