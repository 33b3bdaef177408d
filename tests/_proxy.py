"""Network stand-ins for the fault tests, all on 127.0.0.1: a proxy, a relay, and checks.

- :class:`ConnectProxy`: a real HTTP ``CONNECT`` proxy (what ``Client(proxy=...)`` tunnels
  through), optionally asking for Basic credentials. It only tunnels to loopback, so a test
  can never send traffic elsewhere.
- :class:`Relay`: forwards TCP to a local port, and on demand adds latency (a slow server),
  swallows every byte in both directions with the sockets left open (a half-open network),
  resets every connection (TCP RST), or terminates TLS with a test certificate (the
  simulator speaks plain ``ws://``).
- :func:`server_set` / :func:`wanted_set` / :func:`wait_replayed`: what the server holds
  against what the client wants, the check behind "no subscription was lost";
  :func:`subscribe_mix` and :func:`wait_flowing`: a session worth losing, and proof that
  every one of its subscriptions delivers.

Threads are named ``test-proxy-*`` and ``test-relay-*``; ``close()`` joins all of them.
"""

from __future__ import annotations

import base64
import contextlib
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import cmcsync
from cmcsync.exceptions import ConnectionFailedError
from cmcsync.testing import EventRecorder, Simulator

__all__ = [
    "PRICE",
    "PRICE_IDS",
    "ConnectProxy",
    "Relay",
    "failure_reasons",
    "server_set",
    "subscribe_mix",
    "until",
    "wait_flowing",
    "wait_replayed",
    "wanted_set",
]

PRICE = "market@crypto_latest_price"
PRICE_IDS = (1, 1027, 52)
KLINE = "onchain@kline"

_CHUNK = 65536
_LOOPBACK = ("127.0.0.1", "localhost")

SubKey = tuple[str, frozenset[tuple[str, Any]]]


def server_set(sim: Simulator) -> set[SubKey]:
    """Every subscription the server holds, over all its open connections."""
    held: set[SubKey] = set()
    for conn in sim.connections():
        held |= conn.subscriptions
    return held


def wanted_set(client: cmcsync.Client) -> set[SubKey]:
    """The client's wanted subscriptions, in the server's form."""
    return {(sub.channel, frozenset(sub.params)) for sub in client.subscriptions()}


def until(sim: Simulator, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()``, re-checked whenever the server sees anything and at least
    every 20 ms (for conditions on the client's side, which the server does not see change).

    :raises TimeoutError: if it is still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            sim.wait_for(predicate, timeout=min(0.02, max(deadline - time.monotonic(), 0.001)))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition still false after {timeout} s") from None


def wait_replayed(sim: Simulator, client: cmcsync.Client, timeout: float = 5.0) -> None:
    """Wait until the server holds exactly what the client wants, all of it acknowledged.

    :raises TimeoutError: naming what is missing or extra.
    """

    def settled() -> bool:
        states = set(client.subscriptions().values())
        return server_set(sim) == wanted_set(client) and states <= {
            cmcsync.SubscriptionState.ACTIVE
        }

    try:
        until(sim, settled, timeout)
    except TimeoutError:
        wanted, held = wanted_set(client), server_set(sim)
        raise TimeoutError(
            f"not replayed within {timeout} s: missing {sorted(map(str, wanted - held))}, "
            f"extra {sorted(map(str, held - wanted))}, states {client.subscriptions()}"
        ) from None


def failure_reasons(recorder: EventRecorder) -> list[str]:
    """Why each socket ended or each attempt failed, in order: the ``cmcsync_on_disconnect``
    reasons and the ``cmcsync_on_error`` reports of failed attempts."""
    reasons = []
    for hook, kwargs in list(recorder.calls):
        if hook == "cmcsync_on_disconnect":
            reasons.append(kwargs["reason"])
        elif hook == "cmcsync_on_error" and type(kwargs["error"]) is ConnectionFailedError:
            reasons.append(str(kwargs["error"]))
    return reasons


def subscribe_mix(client: cmcsync.Client, *, wait: bool = True) -> None:
    """Subscribe to three prices and one kline: two channels, four subscriptions."""
    client.subscribe(PRICE, crypto_ids=list(PRICE_IDS), wait=wait)
    client.subscribe(KLINE, platform_id=14, address=["0xabc"], interval="1s", wait=wait)


def wait_flowing(recorder: EventRecorder, timeout: float = 5.0) -> None:
    """Wait until every price of :func:`subscribe_mix` delivered an event from now on."""
    mark = len(recorder.events)
    recorder.wait_for(
        lambda: (
            {e.params.get("crypto_ids") for e in recorder.events[mark:] if e.channel == PRICE}
            >= set(PRICE_IDS)
        ),
        timeout=timeout,
    )


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN, waking any thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # SHUT_RD wakes a blocked recv() without sending anything; the close then resets.
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Server:
    """A listening socket on 127.0.0.1 whose accept loop and connection threads it joins."""

    name = "test-server"

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._acceptor: threading.Thread | None = None
        #: How many TCP connections were accepted.
        self.accepted = 0

    def start(self) -> Any:
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept")
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        self._listener.close()
        self.sever(rst=False)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        alive = [t.name for t in threads if t.is_alive()]
        assert not alive, f"threads still running: {alive}"

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def sever(self, *, rst: bool = True) -> None:
        """End every connection at once; with ``rst``, as a TCP reset."""
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            if rst:
                _reset(sock)
            else:
                _shut(sock)
                sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self._stop.is_set():
            self.sever(rst=False)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.name}-conn")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(0.05):
                    continue
                try:
                    sock, _ = self._listener.accept()
                except OSError:
                    continue
                self.accepted += 1
                self._track(sock)
                self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        """Copy bytes both ways until either side ends."""
        other = threading.Thread(target=self._pump, args=(b, a), name=f"{self.name}-pump")
        with self._lock:
            self._threads.append(other)
        other.start()
        self._pump(a, b)
        other.join()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                if not self._forward(data):
                    continue
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            _shut(dst)
            _shut(src)

    def _forward(self, data: bytes) -> bool:
        """Whether to pass ``data`` on (after any delay); false swallows it."""
        return True


class Relay(_Server):
    """A TCP relay from 127.0.0.1 to ``upstream_port``; see the module docstring.

    :param upstream_port: where to forward, on 127.0.0.1.
    :param tls: a server-side context: the relay terminates TLS and forwards plain bytes.
    :param delay: seconds added before every chunk, both ways (settable while running).
    """

    name = "test-relay"

    def __init__(
        self, upstream_port: int, *, tls: ssl.SSLContext | None = None, delay: float = 0.0
    ) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.tls = tls
        self.delay = delay
        self._hole = threading.Event()
        #: TLS handshakes the relay saw fail (the client refused the certificate).
        self.tls_failures: list[str] = []
        #: TLS handshakes that completed.
        self.tls_accepted = 0

    def blackhole(self, on: bool = True) -> None:
        """Swallow every byte both ways, sockets left open (a half-open network)."""
        if on:
            self._hole.set()
        else:
            self._hole.clear()

    def _forward(self, data: bytes) -> bool:
        if self.delay > 0:
            self._stop.wait(self.delay)
        return not self._hole.is_set()

    def _serve(self, sock: socket.socket) -> None:
        client: socket.socket = sock
        if self.tls is not None:
            try:
                sock.settimeout(5)
                client = self.tls.wrap_socket(sock, server_side=True)
                client.settimeout(None)
            except (OSError, ValueError) as exc:
                self.tls_failures.append(str(exc))
                sock.close()
                return
            self.tls_accepted += 1
            self._track(client)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        self._pipe(client, upstream)
        client.close()
        upstream.close()


class ConnectProxy(_Server):
    """An HTTP ``CONNECT`` proxy on 127.0.0.1 that tunnels to loopback ports only.

    :param credentials: ``(user, password)`` the client must send (Basic), or ``None``.
    :param refuse: answer every CONNECT with this status instead (e.g. 502).
    """

    name = "test-proxy"

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, refuse: int | None = None
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.refuse = refuse
        #: ``(host, port)`` of every tunnel opened, in order.
        self.tunnels: list[tuple[str, int]] = []
        #: Every CONNECT request's header block, as received.
        self.requests: list[str] = []
        #: Statuses answered, in order.
        self.statuses: list[int] = []

    def _answer(self, sock: socket.socket, status: int, phrase: str, extra: str = "") -> None:
        self.statuses.append(status)
        sock.sendall(f"HTTP/1.1 {status} {phrase}\r\n{extra}Content-Length: 0\r\n\r\n".encode())

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    sock.close()
                    return
                head += chunk
        except OSError:
            sock.close()
            return
        text, _, rest = head.partition(b"\r\n\r\n")
        request = text.decode("latin-1")
        self.requests.append(request)
        lines = request.split("\r\n")
        method, _, target = lines[0].partition(" ")
        target = target.rsplit(" ", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        host, _, port_text = target.rpartition(":")
        if self.refuse is not None:
            self._answer(sock, self.refuse, "Refused by the test")
        elif method != "CONNECT" or not port_text.isdigit():
            self._answer(sock, 405, "Method Not Allowed")
        elif host.strip("[]") not in _LOOPBACK:
            self._answer(sock, 403, "Forbidden: this test proxy only tunnels to loopback")
        elif self.credentials is not None and headers.get("proxy-authorization") != (
            "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        ):
            self._answer(
                sock,
                407,
                "Proxy Authentication Required",
                'Proxy-Authenticate: Basic realm="t"\r\n',
            )
        else:
            try:
                upstream = socket.create_connection(("127.0.0.1", int(port_text)), timeout=5)
            except OSError:
                self._answer(sock, 502, "Bad Gateway")
                sock.close()
                return
            upstream.settimeout(None)
            self._track(upstream)
            self.tunnels.append((host, int(port_text)))
            self.statuses.append(200)
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sock.settimeout(None)
            if rest:
                upstream.sendall(rest)
            self._pipe(sock, upstream)
            upstream.close()
        sock.close()
