"""The loop-thread half of the simulator: serves connections and carries out faults.

Everything here runs on the simulator's event loop, except :meth:`SimServer.call` and
:meth:`SimServer.call_close`, which other threads use to get there.
"""

from __future__ import annotations

import asyncio
import http
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

import attrs
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.http11 import Request, Response
from websockets.protocol import State

from cmcsync._connection import install_redaction
from cmcsync.testing._feeds import Feeds
from cmcsync.testing._simconn import (
    Board,
    HandshakeRecord,
    SimConnection,
    SimServerConnection,
    encode_frame,
)
from cmcsync.testing._simengine import FeedEngine
from cmcsync.testing._simprotocol import (
    CLOSE_REASONS,
    SubKey,
    error_frame,
    now_ms,
    params_echo,
    record_of,
    respond,
    welcome_frame,
)

__all__ = ["SimServer", "SimSettings", "closable"]

_log = logging.getLogger("cmcsync.testing.simulator")
# websockets logs each handshake's headers at DEBUG: the key must not reach the log.
install_redaction(_log)
_T = TypeVar("_T")
_KEY_HEADER = "X-CMC_PRO_API_KEY"
_KEY_QUERY = "CMC_PRO_API_KEY"
_CALL_TIMEOUT = 10.0


def closable(code: int) -> bool:
    """Whether a server may put ``code`` in a close frame (RFC 6455 §7.4)."""
    return code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000


@attrs.frozen(kw_only=True)
class SimSettings:
    """A simulator's settings, already validated; see :class:`Simulator` for each."""

    host: str
    port: int
    api_keys: frozenset[str] | None
    key_status: Mapping[str, int]
    sub_limit: int
    max_connections: int
    ping_interval_ms: int | None
    speed: float
    feeds: bool
    seed: int | str
    max_message_bytes: int


class SimServer:
    """Serves CMC connections on an event loop and applies a test's faults to them.

    :param settings: what to serve.
    :param board: where everything observable is recorded.
    """

    def __init__(self, settings: SimSettings, board: Board) -> None:
        self.settings = settings
        self.board = board
        self.port = settings.port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._server: Server | None = None
        self._engine: FeedEngine | None = None
        self._unsilenced = asyncio.Event()
        self._unsilenced.set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- from other threads ----------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop from another thread and return its result.

        :raises RuntimeError: if the server is not running, or when called on its thread.
        """
        loop, thread = self.loop, self.thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            coro.close()
            raise RuntimeError("the simulator is not running; call start() first")
        if thread is threading.current_thread():
            coro.close()
            raise RuntimeError("this Simulator method cannot be called from its own thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CALL_TIMEOUT)

    def call_close(self, conns: Collection[SimConnection], code: int, reason: str) -> None:
        """Send close frames from another thread; returns once they are written.

        :raises ValueError: for a code a close frame cannot carry.
        """
        if not closable(code):
            raise ValueError(f"{code} is not a close code a server may send")
        self.call(self.close(conns, code, reason))

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; sets :attr:`port` to the bound one."""
        self.loop = asyncio.get_running_loop()
        if self.settings.feeds:
            feeds = Feeds(seed=self.settings.seed, speed=self.settings.speed)
            self._engine = FeedEngine(feeds, self._push_data)
        # Connections are SimServerConnection (create_connection), which serve's types miss.
        self._server = await serve(
            cast(Callable[[ServerConnection], Awaitable[None]], self._handle),
            self.settings.host,
            self.settings.port,
            process_request=cast(Any, self._process_request),
            process_response=cast(Any, self._process_response),
            create_connection=SimServerConnection,
            compression=None,
            ping_interval=None,
            close_timeout=1.0,
            max_size=max(16 * self.settings.max_message_bytes, 2**20),
            max_queue=64,
            logger=_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def shutdown(self, grace: float) -> None:
        """Close every connection with 1001, aborting those still open after ``grace`` s."""
        assert self._server is not None
        if self._engine is not None:
            self._engine.close()
        for conn in self._open():
            if conn._ws.sim_silenced:  # it would never process the client's closing reply
                conn._ws.transport.abort()
        self._server.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), grace)
        except asyncio.TimeoutError:
            for conn in self._open():
                conn._ws.transport.abort()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    # -- faults ----------------------------------------------------------------------------

    async def close(self, conns: Collection[SimConnection], code: int, reason: str) -> None:
        """Start the closing handshake of ``conns``; returns once the close frames are out."""
        for conn in conns:
            task = asyncio.get_running_loop().create_task(conn._ws.close(code, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(0)  # each close task writes its close frame on its first step

    async def drop(self, conns: Collection[SimConnection]) -> None:
        """Abort the TCP connections of ``conns``, without a close frame."""
        for conn in conns:
            conn._dropped = True
            conn._ws.transport.abort()

    async def stall(self, key: SubKey, until: str) -> int:
        """Stop pushing one subscription's data; see :meth:`FeedEngine.stall`."""
        return self._engine.stall(key, until) if self._engine is not None else 0

    async def set_silence(self, on: bool) -> None:
        """Stop or resume reading and sending on every connection, present and future."""
        if on:
            self._unsilenced.clear()
        else:
            self._unsilenced.set()
        for conn in self._open():
            if on:
                conn._ws.sim_pause()
            else:
                conn._ws.sim_resume()

    async def push(
        self, conns: Collection[SimConnection], payload: str | bytes, record: dict[str, Any]
    ) -> None:
        """Queue a frame on ``conns``; returns once written (at once while silent)."""
        waiters = [conn.enqueue(payload, record, track=True) for conn in conns]
        if self._unsilenced.is_set():
            await asyncio.gather(*(waiter for waiter in waiters if waiter is not None))

    async def until_unsilenced(self, ws: SimServerConnection) -> bool:
        """Wait while the server is silent; ``False`` if the connection closed meanwhile."""
        if self._unsilenced.is_set():
            return True
        resumed = asyncio.ensure_future(self._unsilenced.wait())
        closed = asyncio.ensure_future(ws.wait_closed())
        await asyncio.wait({resumed, closed}, return_when=asyncio.FIRST_COMPLETED)
        resumed.cancel()
        closed.cancel()
        return ws.state is not State.CLOSED

    # -- handshake -------------------------------------------------------------------------

    def _open(self) -> list[SimConnection]:
        with self.board.cond:
            return list(self.board.open)

    def _process_request(self, ws: SimServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        key = request.headers.get(_KEY_HEADER, "").strip()
        ws.sim_key_source = "header" if key else None
        if not key:
            key = urllib.parse.parse_qs(query).get(_KEY_QUERY, [""])[0].strip()
            ws.sim_key_source = "query" if key else None
        with self.board.cond:
            rejection = self.board.rejections.pop(0) if self.board.rejections else None
        if rejection is not None:
            phrase = http.HTTPStatus(rejection).phrase
            return ws.respond(rejection, f"{phrase} (Simulator.reject_handshakes)\n")
        if path.rstrip("/") != "/v1":
            return ws.respond(http.HTTPStatus.NOT_FOUND, f"No endpoint {path}; use /v1\n")
        if not key:
            return ws.respond(
                http.HTTPStatus.UNAUTHORIZED,
                f"API key missing: send it in the {_KEY_HEADER} header\n",
            )
        ws.sim_key = key
        return None

    def _process_response(
        self, ws: SimServerConnection, request: Request, response: Response
    ) -> None:
        path = request.path.partition("?")[0]
        with self.board.cond:
            self.board.handshakes.append(
                HandshakeRecord(response.status_code, path, ws.sim_key_source)
            )
            self.board.changed()
        upgraded = response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS
        if upgraded and not self._unsilenced.is_set():
            ws.sim_pause()

    def _refusal(self, key: str) -> int | None:
        """The close code that refuses a new connection with ``key``, or ``None``."""
        if key in self.settings.key_status:
            return self.settings.key_status[key]
        if self.settings.api_keys is not None and key not in self.settings.api_keys:
            return 4100
        held = sum(1 for other in self.board.keys.values() if other == key)
        return 4004 if held >= self.settings.max_connections else None

    # -- one connection --------------------------------------------------------------------

    async def _handle(self, ws: SimServerConnection) -> None:
        assert ws.sim_key is not None
        refusal = self._refusal(ws.sim_key)
        with self.board.cond:
            conn = SimConnection(self, len(self.board.all) + 1, ws)
            self.board.all.append(conn)
            if refusal is None:
                self.board.open.append(conn)
                self.board.keys[conn.id] = ws.sim_key
            self.board.changed()
        if refusal is not None:
            await self.close([conn], refusal, CLOSE_REASONS.get(refusal, ""))
            await ws.wait_closed()
            self._finish(conn)
            return
        writer = asyncio.get_running_loop().create_task(conn.write_loop())
        if self.settings.ping_interval_ms is not None:
            conn.enqueue(*encode_frame(welcome_frame(self.settings.ping_interval_ms)))
        try:
            while await self.until_unsilenced(ws):
                frame = await ws.recv()
                # A frame read just before a silence began is answered when it ends.
                if not await self.until_unsilenced(ws):
                    break
                self._on_frame(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if ws.state is not State.CLOSED:
                await ws.close()
            self._finish(conn)

    def _finish(self, conn: SimConnection) -> None:
        protocol = conn._ws.protocol
        sent, rcvd = protocol.close_sent, protocol.close_rcvd
        if conn._dropped:
            code = 1006
        elif sent is not None and protocol.close_rcvd_then_sent is not True:
            code = sent.code  # the server closed first
        else:
            code = rcvd.code if rcvd is not None else 1006
        with self.board.cond:
            self._change_subscriptions(conn, removed=tuple(conn._subs))
            conn._closed = True
            conn._close_code = code
            if conn in self.board.open:
                self.board.open.remove(conn)
            self.board.keys.pop(conn.id, None)
            self.board.changed()

    def _take_failure(self) -> tuple[int, str | None] | None:
        with self.board.cond:
            return self.board.failures.pop(0) if self.board.failures else None

    def _on_frame(self, conn: SimConnection, frame: str | bytes) -> None:
        record = record_of(frame)
        with self.board.cond:
            conn._received.append(record)
            self.board.received.append(record)
            self.board.changed()
        try:
            outcome = respond(
                frame,
                conn._subs,
                sub_limit=self.settings.sub_limit,
                max_bytes=self.settings.max_message_bytes,
                take_failure=self._take_failure,
            )
        except Exception as exc:  # noqa: BLE001 - a simulator bug answers 5001, the connection goes on
            _log.exception("the simulator failed on a request")
            conn.enqueue(*encode_frame(error_frame(5001, f"Simulator error: {exc!r}")))
            return
        conn.enqueue(*encode_frame(outcome.reply))
        if outcome.added or outcome.removed:
            with self.board.cond:
                self._change_subscriptions(conn, outcome.added, outcome.removed)
                self.board.changed()
        if self._engine is not None:
            for key in outcome.added:
                self._engine.snapshot(conn, key)

    def _change_subscriptions(
        self,
        conn: SimConnection,
        added: Sequence[SubKey] = (),
        removed: Sequence[SubKey] = (),
    ) -> None:
        # Callers hold the board's lock.
        for key in removed:
            conn._subs.discard(key)
            if self._engine is not None:
                self._engine.remove(conn, key)
        for key in added:
            conn._subs.add(key)
            if self._engine is not None:
                self._engine.add(conn, key)

    def _push_data(self, conns: Sequence[SimConnection], key: SubKey, data: dict[str, Any]) -> None:
        if not self._unsilenced.is_set():
            return  # a silent server generates nothing for anyone
        frame = {
            "type": "data",
            "channel": key[0],
            "params": params_echo(key),
            "data": data,
            "ts": now_ms(),
        }
        payload, record = encode_frame(frame)
        for conn in conns:
            conn.enqueue(payload, record)
