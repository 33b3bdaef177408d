"""The simulator's observable state: its connections, what they sent and received."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from cmcsync.testing._simprotocol import SubKey, record_of

if TYPE_CHECKING:
    from cmcsync.testing._simserver import SimServer

__all__ = ["Board", "HandshakeRecord", "SimConnection", "SimServerConnection", "encode_frame"]

#: A frame queued for sending: the wire form, how ``sent`` records it, and a future to
#: resolve once it is written (or dropped because the connection closed).
_Outgoing = tuple["str | bytes", dict[str, Any], "asyncio.Future[None] | None"]


@attrs.frozen
class HandshakeRecord:
    """One HTTP upgrade attempt as the simulator answered it. Never holds the API key.

    :param status: the HTTP status answered (101 when the upgrade was accepted, even if the
        connection was then closed with 4100, 4101, 4102 or 4004).
    :param path: the request path, without its query string.
    :param key_source: where the API key was found: ``"header"``, ``"query"`` or ``None``.
    """

    status: int
    path: str
    key_source: str | None


def encode_frame(frame: dict[str, Any] | str | bytes) -> tuple[str | bytes, dict[str, Any]]:
    """Return a frame's wire form and the decoded form ``sent`` records.

    :raises TypeError: for anything but a dict (sent as JSON), a str (a text frame as is) or
        bytes (a binary frame).
    """
    if isinstance(frame, dict):
        return json.dumps(frame), frame
    if isinstance(frame, (str, bytes)):
        return frame, record_of(frame)
    raise TypeError(f"a frame is a dict, str or bytes, not {type(frame).__name__}")


class Board:
    """What tests observe of a simulator, and the faults waiting to happen.

    Written on the simulator's loop thread, read from any thread, always under :attr:`cond`.
    Every change bumps :attr:`generation` and wakes :meth:`Simulator.wait_for
    <cmcsync.testing.Simulator.wait_for>`.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.generation = 0
        self.open: list[SimConnection] = []
        self.all: list[SimConnection] = []
        # connection id -> its API key, to count connections per key; never shown.
        self.keys: dict[int, str] = {}
        self.received: list[dict[str, Any]] = []
        self.handshakes: list[HandshakeRecord] = []
        self.failures: list[tuple[int, str | None]] = []
        self.rejections: list[int] = []

    def changed(self) -> None:
        """Record that something happened; the caller holds :attr:`cond`."""
        self.generation += 1
        self.cond.notify_all()


class SimServerConnection(ServerConnection):
    """A websockets connection that can go silent.

    While silent, bytes from the client are held unread by the WebSocket layer, so no
    frame is processed and no RFC 6455 ping is answered; they are processed when the
    silence ends. The socket itself is still watched, so a client that gives up and
    disconnects is seen (its held bytes, close frame included, are processed then). When
    the server aborts the socket instead (a drop, a close timeout), the held bytes are
    discarded: the client's stream ended without them.
    """

    sim_key: str | None = None
    sim_key_source: str | None = None
    sim_silenced = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sim_held: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        if self.sim_silenced:
            self._sim_held.append(data)
        else:
            super().data_received(data)

    def eof_received(self) -> None:
        self._sim_release()
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        # An abort (a drop, a close timeout) comes here without eof_received, and the
        # stream ends here: bytes held by a silence can never be processed after this.
        self._sim_held.clear()
        super().connection_lost(exc)

    def sim_pause(self) -> None:
        """Hold everything the client sends from now on."""
        self.sim_silenced = True

    def sim_resume(self) -> None:
        """Process what was held, and what comes next.

        On a socket that is closing or closed, what was held is discarded instead. Never
        raises: the caller is resuming every connection at once, so a failure to process
        this one's bytes is logged and aborts this connection only, as asyncio does when
        ``data_received`` fails.
        """
        self.sim_silenced = False
        if self.transport.is_closing():
            self._sim_held.clear()
            return
        try:
            self._sim_release()
        except Exception:  # one connection's failure must not reach the test that resumed all
            self.logger.exception("the simulator failed on bytes held during a silence")
            self.transport.abort()

    def _sim_release(self) -> None:
        held = b"".join(self._sim_held)
        self._sim_held.clear()
        if held:
            super().data_received(held)


class SimConnection:
    """One WebSocket connection accepted by a :class:`~cmcsync.testing.Simulator`.

    Everything here can be read from any thread; the lists and sets are copies.

    :ivar id: 1 for the first connection the simulator accepted, then 2, 3...
    """

    def __init__(self, server: SimServer, conn_id: int, ws: SimServerConnection) -> None:
        self.id = conn_id
        self._server = server
        self._lock = server.board.cond
        self._ws = ws
        self._received: list[dict[str, Any]] = []
        self._sent: list[dict[str, Any]] = []
        self._subs: set[SubKey] = set()
        self._closed = False
        self._close_code: int | None = None
        self._dropped = False
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()

    def __repr__(self) -> str:
        state = f"closed {self._close_code}" if self._closed else "open"
        return f"<SimConnection id={self.id} {state} subscriptions={len(self._subs)}>"

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every JSON message this client sent, in order; other frames as ``{"_raw": text}``."""
        with self._lock:
            return list(self._received)

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every frame the server wrote on this connection, decoded, data pushes included."""
        with self._lock:
            return list(self._sent)

    @property
    def subscriptions(self) -> set[SubKey]:
        """The server's view: ``(channel, frozenset(params.items()))``, list param scalar."""
        with self._lock:
            return set(self._subs)

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is gone."""
        with self._lock:
            return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code: the server's if it closed first, else the client's; 1006 when the
        connection ended without a close frame; ``None`` while open."""
        with self._lock:
            return self._close_code

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame with ``code`` and ``reason``; returns once it is written.

        :raises ValueError: for a code a close frame cannot carry.
        """
        self._server.call_close([self], code, reason)

    def drop(self) -> None:
        """Abort the TCP connection without a close frame."""
        self._server.call(self._server.drop([self]))

    # -- loop-thread side -------------------------------------------------------------------

    def enqueue(
        self, payload: str | bytes, record: dict[str, Any], *, track: bool = False
    ) -> asyncio.Future[None] | None:
        """Queue a frame behind the ones already waiting; on the simulator's loop only.

        :returns: with ``track``, a future resolved once the frame is written or dropped.
        """
        done = asyncio.get_running_loop().create_future() if track else None
        if self._closed:
            if done is not None:
                done.set_result(None)
            return done
        self._queue.put_nowait((payload, record, done))
        return done

    async def _send(self, payload: str | bytes, record: dict[str, Any]) -> None:
        # Recorded first, so a client that has read a frame always finds it in ``sent``;
        # a send on a closed connection raises before writing anything.
        with self._lock:
            self._sent.append(record)
            self._server.board.changed()
        try:
            await self._ws.send(payload)
        except ConnectionClosed:
            with self._lock:
                self._sent.pop()
            raise

    async def write_loop(self) -> None:
        """Write queued frames in order, holding them while the simulator is silent."""
        try:
            while True:
                payload, record, done = await self._queue.get()
                try:
                    if await self._server.until_unsilenced(self._ws):
                        await self._send(payload, record)
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
        except ConnectionClosed:
            pass
        finally:
            while not self._queue.empty():
                _, _, done = self._queue.get_nowait()
                if done is not None and not done.done():
                    done.set_result(None)
