"""The dispatcher thread reads the socket while the plugins are quick, and gives it back.

In thread mode a connection lends its open socket to the dispatcher thread whenever that
thread is idle, so a quiet stream is read and dispatched on one thread. A plugin that stays
in a hook longer than ``STALL_AFTER`` makes the reader thread take the socket back, so the
socket is still read, control frames still answered and nothing lost or reordered; and the
socket is lent again once the plugins have caught up. Hooks always run on
``cmcsync-dispatch``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

import cmcsync
from cmcsync import _dispatch
from cmcsync.testing import EventRecorder, Simulator, wait_until
from tests._rawserver import RawServer, frame
from tests.conftest import KEY

PRICE = "market@crypto_latest_price"


def push(cid: int) -> bytes:
    """One price push for ``cid``, framed; ``cid`` doubles as a sequence number."""
    message = {"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}}
    message.update(data={"cid": 1, "p": float(cid)}, ts=cid)
    return frame(json.dumps(message).encode())


class Seen:
    """Records each price's sequence number and the thread of each hook call."""

    def __init__(self) -> None:
        self.sequence: list[int] = []
        self.threads: set[str] = set()
        self.hold: dict[int, threading.Event] = {}
        self.holding = threading.Event()
        self.lock = threading.Lock()

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: Any) -> None:
        number = int(event.price)
        with self.lock:
            self.sequence.append(number)
            self.threads.add(threading.current_thread().name)
        release = self.hold.get(number)
        if release is not None:
            self.holding.set()
            assert release.wait(10), "the test never released the hook"

    @cmcsync.hookimpl
    def cmcsync_on_connect(self, client: Any, url: str, reconnect: bool) -> None:
        with self.lock:
            self.threads.add(threading.current_thread().name)

    def count(self) -> int:
        with self.lock:
            return len(self.sequence)


@pytest.fixture(params=["awake", "dozing"])
def doze(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: as is, and with the reader threads always dozing while the
    dispatcher thread is idle, so that only its wake-up lets them take a socket back."""
    if request.param == "dozing":
        monkeypatch.setattr(_dispatch, "DOZE_AFTER", 0.0)
    return str(request.param)


def lending_client(url: str, *plugins: object, **kwargs: Any) -> cmcsync.Client:
    """A client in thread mode (the default) with these plugins and short timeouts."""
    kwargs.setdefault("timeouts", cmcsync.Timeouts(ack=5.0, pong=0.5, close=2.0))
    kwargs.setdefault("backoff", cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1))
    return cmcsync.Client(api_key=KEY, url=url, autoload=False, plugins=plugins, **kwargs)


def lend_by_pushing(raw: RawServer, client: cmcsync.Client, seen: Seen, after: int) -> int:
    """Send single pushes, from ``after + 1`` on, until the socket is lent; return the last.

    The reader thread lends its socket when it reads a frame while the dispatcher thread
    is idle: with nothing queued, one push is usually enough.
    """
    for number in range(after + 1, after + 20):
        raw.send(push(number))
        wait_until(lambda n=number: seen.count() >= n)
        if connection_stats(client)["lent"]:
            return number
    raise AssertionError(f"the socket was never lent: {connection_stats(client)}")


def hold_the_dispatcher(
    raw: RawServer, client: cmcsync.Client, seen: Seen, release: threading.Event
) -> int:
    """Start ``client``, have its socket lent, then send a push whose hook waits for
    ``release``; return that push's number once the hook holds the dispatcher thread."""
    client.start()
    held = lend_by_pushing(raw, client, seen, 0) + 1
    seen.hold[held] = release
    raw.send(push(held))
    assert seen.holding.wait(5)
    return held


def connection_stats(client: cmcsync.Client) -> dict[str, Any]:
    stats: dict[str, Any] = client.stats()["connections"][0]
    return stats


@pytest.fixture(params=["epoll", "selectors"])
def waiter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the dispatcher thread waiting through epoll, then as it does where
    the platform has none (the selectors module)."""
    if request.param == "selectors":
        monkeypatch.delattr(_dispatch.select, "epoll", raising=False)
    return str(request.param)


def test_a_quiet_stream_is_read_and_dispatched_by_the_dispatcher_thread(
    raw: RawServer, waiter: str
) -> None:
    seen = Seen()
    client = lending_client(raw.url, seen)
    try:
        client.start()
        for number in range(1, 51):
            raw.send(push(number))
            wait_until(lambda n=number: seen.count() >= n, timeout=5)
        assert seen.sequence == list(range(1, 51))
        assert seen.threads == {"cmcsync-dispatch"}
        stats = connection_stats(client)
        # Lent once, early, and never taken back: nothing was slow.
        assert stats["lends"] >= 1
        assert stats["takebacks"] == 0
        assert stats["lent"]
        assert client.stats()["takebacks"] == 0
    finally:
        client.close()


def test_a_slow_hook_gets_the_socket_read_by_its_reader_thread_meanwhile(
    raw: RawServer, doze: str
) -> None:
    seen = Seen()
    release = threading.Event()
    client = lending_client(raw.url, seen)
    try:
        held = hold_the_dispatcher(raw, client, seen, release)
        frames_before = connection_stats(client)["frames_received"]
        # While the hook holds the dispatcher thread: pushes are read, and a ping answered.
        last = held + 200
        raw.send(b"".join(push(n) for n in range(held + 1, last + 1)))
        raw.send(frame(b"are you there", 0x9))
        raw.wait(lambda: (0xA, b"are you there") in raw.received)
        wait_until(lambda: connection_stats(client)["frames_received"] >= frames_before + 200)
        wait_until(lambda: client.stats()["dispatch"]["queue_depth"] == 200)
        assert connection_stats(client)["takebacks"] >= 1
        assert seen.count() == held
        release.set()
        wait_until(lambda: seen.count() >= last)
        # Caught up: the socket is lent again.
        last = lend_by_pushing(raw, client, seen, last)
        assert seen.sequence == list(range(1, last + 1))
        assert seen.threads == {"cmcsync-dispatch"}
        assert client.stats()["reconnects"] == 0
    finally:
        release.set()
        client.close()


def test_order_holds_through_many_takebacks_and_lends(
    raw: RawServer, doze: str, waiter: str
) -> None:
    seen = Seen()
    releases = []
    client = lending_client(raw.url, seen)
    try:
        client.start()
        number = 0
        for _ in range(10):
            number = lend_by_pushing(raw, client, seen, number)
            # Then a burst, read by the dispatcher thread until a hook holds it.
            release = seen.hold[number + 40] = threading.Event()
            releases.append(release)
            takebacks = connection_stats(client)["takebacks"]
            seen.holding.clear()
            raw.send(b"".join(push(n) for n in range(number + 1, number + 101)))
            number += 100
            assert seen.holding.wait(5)
            wait_until(lambda t=takebacks: connection_stats(client)["takebacks"] > t)
            release.set()
            wait_until(lambda n=number: seen.count() >= n)
        assert seen.sequence == list(range(1, number + 1))
        assert seen.threads == {"cmcsync-dispatch"}
        stats = client.stats()
        assert stats["takebacks"] >= 10
        assert connection_stats(client)["lends"] >= 10
        assert stats["dispatch"]["delivered"] == number
        assert stats["dispatch"]["dropped"] == 0
    finally:
        for release in releases:
            release.set()
        client.close()


def test_a_hook_can_ping_the_server_through_the_socket_it_was_lent() -> None:
    # The pong must be read while the hook waits for it: the reader thread takes the socket
    # back to read it.
    results: list[float] = []
    ping_at: list[int] = []

    class Pinger(Seen):
        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any, client: Any) -> None:
            if ping_at and int(event.price) == ping_at[0]:
                results.append(client.ping(timeout=5))

    def answer(payload: bytes) -> bytes | None:
        message = json.loads(payload)
        if message.get("method") != "ping":
            return None
        return frame(json.dumps({"type": "pong", "id": message.get("id")}).encode())

    server = RawServer(answer)
    pinger = Pinger()
    client = lending_client(server.url, pinger)
    try:
        client.start()
        number = lend_by_pushing(server, client, pinger, 0) + 1
        ping_at.append(number)
        server.send(push(number))
        wait_until(lambda: results, timeout=5)
        assert connection_stats(client)["takebacks"] >= 1
        assert 0 < results[0] < 5
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize(
    ("ending", "code"),
    [(frame(b"\x03\xe9going away", 0x8), 1001), (b"", None)],
    ids=["close frame", "dropped"],
)
def test_the_end_of_a_lent_socket_is_handled_by_its_reader_thread(
    raw: RawServer, ending: bytes, code: int | None
) -> None:
    seen = Seen()
    client = lending_client(raw.url, seen)
    try:
        client.start()
        number = lend_by_pushing(raw, client, seen, 0)
        # Read by the dispatcher thread: the frame before the end, then the end itself.
        raw.send(push(number + 1) + ending)
        if not ending:
            raw.drop()
        raw.wait(lambda: raw.handshakes == 2, timeout=10)
        wait_until(lambda: client.stats()["connects"] == 2)
        stats = client.stats()
        if code is not None:
            assert stats["last_close_code"] == code
        else:
            assert "connection lost" in stats["last_close_reason"]
        raw.send(push(number + 2))
        wait_until(lambda: seen.count() >= number + 2)
        assert seen.sequence == list(range(1, number + 3))
        assert seen.threads == {"cmcsync-dispatch"}
    finally:
        client.close()


def test_close_returns_while_a_hook_holds_the_dispatcher_thread(raw: RawServer) -> None:
    seen = Seen()
    release = threading.Event()
    client = lending_client(raw.url, seen, timeouts=cmcsync.Timeouts(close=0.5))
    try:
        hold_the_dispatcher(raw, client, seen, release)
        closer = threading.Thread(target=client.close)
        closer.start()
        # The reader thread takes its socket back to close it: close() does not wait for the
        # hook beyond its timeout.
        closer.join(5)
        assert not closer.is_alive()
        assert any(opcode == 0x8 for opcode, _ in raw.received)
        assert client.state is cmcsync.ClientState.CLOSED
        assert not [t for t in threading.enumerate() if t.name.startswith("cmcsync-reader")]
    finally:
        release.set()
        client.close()


def test_one_dispatcher_thread_reads_every_connection_of_a_pool() -> None:
    threads: set[str] = set()

    class Where:
        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any) -> None:
            threads.add(threading.current_thread().name)

    recorder = EventRecorder()
    with Simulator(api_keys=(KEY,), sub_limit=2, speed=50, seed=5) as sim:
        client = lending_client(sim.url, recorder, Where())
        try:
            client.subscribe(PRICE, crypto_ids=[1, 2, 3, 4, 5, 6])
            assert len(sim.connections()) == 3
            # A calm stream: each connection lends its socket once the dispatcher is idle.
            wait_until(lambda: all(c["lent"] for c in client.stats()["connections"]))
            mark = len(recorder.events)

            def every_id_has_news() -> bool:
                ids = {e.params["crypto_ids"] for e in list(recorder.events)[mark:]}
                return ids >= {1, 2, 3, 4, 5, 6}

            recorder.wait_for(every_id_has_news, timeout=10)
            assert threads == {"cmcsync-dispatch"}
        finally:
            client.close()


def test_close_does_not_wait_for_room_for_what_was_read_behind_a_slow_hook(
    raw: RawServer,
) -> None:
    seen = Seen()
    release = threading.Event()
    client = lending_client(raw.url, seen, dispatch=cmcsync.DispatchConfig(queue_size=10))
    try:
        held = hold_the_dispatcher(raw, client, seen, release)
        # The reader takes the socket back and reads 300 pushes: 10 fit in the queue, and the
        # reader waits for room for the rest ("block"), room the held hook never makes.
        raw.send(b"".join(push(n) for n in range(held + 1, held + 301)))
        wait_until(lambda: client.stats()["dispatch"]["blocked"])
        started = time.monotonic()
        client.close(timeout=1.0)
        took = time.monotonic() - started
    finally:
        release.set()
    # The dispatcher gets its full second, held by the hook; the reader thread must not add
    # the 2 s of its own joins, waiting on a queue that cannot make room.
    assert took < 2.0, took
    wait_until(lambda: not client.stats()["dispatch"]["running"])
    counts = client.stats()["dispatch"]
    assert counts["undelivered"] >= 300 - 10
    assert counts["submitted"] == counts["delivered"] + counts["undelivered"]
    assert [t.name for t in threading.enumerate() if t.name.startswith("cmcsync-")] == []


@pytest.mark.parametrize("kind", ["epoll", "selectors"])
def test_the_waiter_reports_what_is_readable_and_forgets_what_is_unregistered(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == "selectors":
        monkeypatch.delattr(_dispatch.select, "epoll", raising=False)
    waiter = _dispatch._Waiter()
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    try:
        waiter.register(a.fileno(), "a")
        waiter.register(b.fileno(), "b")
        b_peer.send(b"x")
        assert waiter.wait() == ["b"]
        a_peer.send(b"x")
        assert sorted(waiter.wait()) == ["a", "b"]
        waiter.unregister(b.fileno())
        assert waiter.wait() == ["a"]
        with pytest.raises((OSError, ValueError, KeyError)):
            waiter.register(a.fileno(), "again")
        fd = a.fileno()
        a.close()
        waiter.unregister(fd)  # closed: nothing to do, and no error
        waiter.unregister(b.fileno())  # already gone
    finally:
        waiter.close()
        for sock in (a, a_peer, b, b_peer):
            sock.close()
