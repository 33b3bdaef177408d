"""A local CMC streaming server for tests, demos and benchmarks.

:class:`Simulator` is a real WebSocket server on 127.0.0.1 that speaks the CMC protocol as
the protocol reference documents it (handshake, welcome, requests, acks, errors, close
codes, data pushes for the ten channels), with faults a test can trigger. It runs an
asyncio event loop (the ``websockets`` library) in one thread named ``cmcsync-simulator``;
every public method may be called from any other thread.

Choices where CMC's documentation is silent, made to be lenient:

- the key may come in the ``X-CMC_PRO_API_KEY`` header or in a ``CMC_PRO_API_KEY`` query
  parameter (the header wins); ``/v1/`` is accepted like ``/v1``;
- a missing key is refused at the HTTP level (401); an unknown, disabled or under-plan key
  gets the upgrade and then an immediate close (4100, 4101, 4102), as does a connection
  over the per-key limit (4004), without a JSON error first;
- the server sends no RFC 6455 pings of its own (CMC does not say it does) and answers the
  client's; permessage-deflate is off so frame sizes are what the client wrote;
- requests larger than ``max_message_bytes`` get 2203 and the connection stays open, up to
  16 times that size (at least 1 MiB); beyond, websockets closes the connection with 1009;
- binary request frames get 2201 (CMC speaks JSON text frames);
- a new subscription on a state channel (prices, metrics, holders) gets a first push right
  after its ack; event channels wait for the next event, interval channels for the next
  interval close (CMC does not say whether a snapshot follows a subscribe);
- a silenced server still answers new upgrades, then stays silent on the connection: no
  welcome, no replies, no pongs until the silence ends, when what the client sent meanwhile
  is processed and answered; data generated during the silence is not sent. The socket is
  still watched, so a client that gives up and disconnects is seen as closed;
- :meth:`Simulator.stop` closes connections with 1001 (going away).

Request validation, acks and error envelopes are in :mod:`cmcsync.testing._simprotocol`;
the generated data in :mod:`cmcsync.testing._feeds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from cmcsync.channels import CHANNELS
from cmcsync.exceptions import ConfigError
from cmcsync.testing._simconn import Board, HandshakeRecord, SimConnection, encode_frame
from cmcsync.testing._simprotocol import now_ms, sub_key
from cmcsync.testing._simserver import SimServer, SimSettings, closable

__all__ = ["HandshakeRecord", "SimConnection", "Simulator"]

_log = logging.getLogger("cmcsync.testing.simulator")


def _check(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise ConfigError(message, param=param)


def _known_status(status: int) -> bool:
    try:
        http.HTTPStatus(status)
    except ValueError:
        return False
    return True


class Simulator:
    """A CMC streaming server on loopback, with realistic data and injectable faults.

    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    :param api_keys: the keys accepted; ``None`` accepts any non-empty key.
    :param key_status: keys refused after the upgrade, with their close code, e.g.
        ``{"disabled": 4101, "basic": 4102}``.
    :param sub_limit: subscriptions allowed per connection (CMC: 100).
    :param max_connections: open connections allowed per key (CMC: 10); one more is
        closed with 4004.
    :param ping_interval_ms: the welcome's ``ping_interval_ms``; ``None`` sends no welcome.
    :param speed: divides every data cadence; the simulated market clock runs this much
        faster (tests use 50 to 1000).
    :param feeds: push generated data on every subscription.
    :param seed: makes the generated data reproducible; random when ``None`` (the seed
        used is in :attr:`seed`).
    :param max_message_bytes: the largest request accepted; longer ones get error 2203.
    :raises ConfigError: for a setting out of range.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Iterable[str] | None = ("test-key",),
        key_status: Mapping[str, int] | None = None,
        sub_limit: int = 100,
        max_connections: int = 10,
        ping_interval_ms: int | None = 10000,
        speed: float = 1.0,
        feeds: bool = True,
        seed: int | str | None = None,
        max_message_bytes: int = 65536,
    ) -> None:
        _check(0 <= port <= 65535, f"port must be 0-65535, got {port}", "port")
        _check(sub_limit >= 1, f"sub_limit must be at least 1, got {sub_limit}", "sub_limit")
        _check(
            max_connections >= 1,
            f"max_connections must be at least 1, got {max_connections}",
            "max_connections",
        )
        _check(speed > 0, f"speed must be > 0, got {speed}", "speed")
        _check(
            max_message_bytes >= 1,
            f"max_message_bytes must be at least 1, got {max_message_bytes}",
            "max_message_bytes",
        )
        _check(
            ping_interval_ms is None or ping_interval_ms > 0,
            f"ping_interval_ms must be > 0 or None, got {ping_interval_ms}",
            "ping_interval_ms",
        )
        for code in (key_status or {}).values():
            _check(closable(code), f"key_status holds {code}, not a close code", "key_status")
        self.host = host
        self.seed: int | str = random.SystemRandom().getrandbits(32) if seed is None else seed
        self._board = Board()
        self._server = SimServer(
            SimSettings(
                host=host,
                port=port,
                api_keys=None if api_keys is None else frozenset(api_keys),
                key_status=dict(key_status or {}),
                sub_limit=sub_limit,
                max_connections=max_connections,
                ping_interval_ms=ping_interval_ms,
                speed=speed,
                feeds=feeds,
                seed=self.seed,
                max_message_bytes=max_message_bytes,
            ),
            self._board,
        )
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._grace = 3.0

    def __repr__(self) -> str:
        state = "running" if self._thread is not None and self._thread.is_alive() else "idle"
        return f"<Simulator {self.url} {state} connections={len(self.connections())}>"

    @property
    def port(self) -> int:
        """The port listened on (the one picked, once started with ``port=0``)."""
        return self._server.port

    @property
    def url(self) -> str:
        """The server's URL, ``ws://127.0.0.1:<port>/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v1"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Start listening; returns once connections are accepted.

        :returns: the simulator itself.
        :raises RuntimeError: if it was already started.
        :raises OSError: if the address cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("this Simulator was already started; make a new one")
        self._thread = threading.Thread(
            target=self._thread_main, name="cmcsync-simulator", daemon=True
        )
        self._server.thread = self._thread
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (1001), stop listening and join the server thread.

        Idempotent. Connections that do not finish their closing handshake in time are
        aborted.

        :raises TimeoutError: if the thread is still running after ``timeout`` seconds.
        :raises RuntimeError: when called from the simulator's own thread.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if thread is threading.current_thread():
            raise RuntimeError("Simulator.stop() cannot be called from the simulator thread")
        self._grace = max(0.0, timeout * 0.6)
        loop, stop_event = self._server.loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the simulator thread did not stop within {timeout} s")

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # noqa: BLE001 - before ready: start() raises it; after: logged
            if self._ready.is_set():
                _log.exception("the simulator's event loop failed")
            else:
                self._startup_error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        await self._server.start()
        self._ready.set()
        await self._stop_event.wait()
        await self._server.shutdown(self._grace)

    # -- observation -------------------------------------------------------------------------

    def connections(self) -> list[SimConnection]:
        """The connections open now, oldest first (refused ones are never listed)."""
        with self._board.cond:
            return list(self._board.open)

    def all_connections(self) -> list[SimConnection]:
        """Every connection ever accepted, including those closed at once with 4xxx."""
        with self._board.cond:
            return list(self._board.all)

    def received(self) -> list[dict[str, Any]]:
        """Every message any client sent, in arrival order (non-JSON as ``{"_raw": text}``)."""
        with self._board.cond:
            return list(self._board.received)

    @property
    def handshakes(self) -> list[HandshakeRecord]:
        """Every upgrade attempt: the status answered and the path; never the key."""
        with self._board.cond:
            return list(self._board.handshakes)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        """Block until ``predicate()`` is true, re-checking whenever the server sees anything.

        :param predicate: called on this thread, outside the simulator's lock; an exception
            it raises counts as false (``connections()[0]`` before any connection).
        :param what: describes the condition, for the timeout message.
        :raises TimeoutError: if it is still false after ``timeout`` seconds, chained to
            the predicate's last exception if it raised one.
        """
        deadline = time.monotonic() + timeout
        board = self._board
        error: Exception | None = None
        while True:
            with board.cond:
                seen = board.generation
            try:
                if predicate():
                    return
            except Exception as exc:  # noqa: BLE001 - e.g. connections()[0] before the first connection
                error = exc
            with board.cond:
                while board.generation == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        message = what or f"condition not met within {timeout} s"
                        raise TimeoutError(message) from error
                    board.cond.wait(remaining)

    # -- faults ------------------------------------------------------------------------------

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every open connection with ``code``; returns once the close frames are out.

        :raises ValueError: for a code a close frame cannot carry.
        """
        self._server.call_close(self.connections(), code, reason)

    def drop_all(self) -> None:
        """Abort every open TCP connection, without a close frame."""
        self._server.call(self._server.drop(self.connections()))

    def silence(self, on: bool = True) -> None:
        """Stop (or resume) reading and sending on every connection, sockets left open.

        While silent the server processes nothing the clients send (so RFC 6455 pings go
        unanswered too) and sends nothing; connections made meanwhile are silent from the
        start. A client that disconnects meanwhile is still seen to close. What a dropped
        connection sent during the silence is discarded, even when the silence ends before
        the drop is seen (:meth:`drop_all` then ``silence(False)`` at once).
        """
        self._server.call(self._server.set_silence(on))

    def stall(self, channel: str, params: Mapping[str, Any], *, until: str = "resubscribe") -> int:
        """Stop serving one subscription's data while acking and answering pings as usual.

        Models the failure a ping cannot detect: the connection is healthy, one subscription
        delivers nothing.

        :param channel: the channel's wire name.
        :param params: the subscription's params, list param as a scalar (``{"crypto_ids": 1}``).
        :param until: ``"resubscribe"`` (default): a fresh subscribe of it on the same
            connection ends the stall; ``"reconnect"``: only a new connection gets data again.
        :returns: how many connections were subscribed to it, and are now stalled.
        """
        _check(
            until in ("resubscribe", "reconnect"),
            f"until must be 'resubscribe' or 'reconnect', not {until!r}",
            "until",
        )
        row = CHANNELS[channel]
        normalized = row.scalar_form(params)
        _check(normalized is not None, f"{params!r} is not one {channel} subscription", "params")
        assert normalized is not None
        return self._server.call(self._server.stall(sub_key(channel, normalized), until))

    def fail_next_subscribe(
        self, error_code: int, detail: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` subscribe requests (any connection) with this error.

        :param error_code: any code; CMC's own get their documented message and category.
        :param detail: the ``error_detail``, omitted when ``None``.
        """
        _check(count >= 1, f"count must be at least 1, got {count}", "count")
        with self._board.cond:
            self._board.failures.extend([(error_code, detail)] * count)

    def reject_handshakes(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` upgrade requests with HTTP ``status`` (e.g. 401, 429)."""
        _check(count >= 1, f"count must be at least 1, got {count}", "count")
        _check(
            400 <= status <= 599 and _known_status(status),
            f"status must be an HTTP error status (4xx or 5xx), got {status}",
            "status",
        )
        with self._board.cond:
            self._board.rejections.extend([status] * count)

    def push(self, frame: dict[str, Any] | str | bytes, conn: SimConnection | None = None) -> None:
        """Send a raw frame to one connection or to all; returns once it is written.

        While the simulator is silent the frame waits for the silence to end and this
        returns at once.

        :param frame: a dict (sent as JSON), a str (a text frame as is, malformed or not)
            or bytes (a binary frame).
        :param conn: the connection; ``None`` for every open one.
        :raises TypeError: for any other kind of frame.
        """
        payload, record = encode_frame(frame)
        if isinstance(frame, dict):  # recorded as the client decodes it, not the caller's dict
            record = json.loads(payload)
        targets = self.connections() if conn is None else [conn]
        self._server.call(self._server.push(targets, payload, record))

    def push_data(
        self,
        channel: str,
        params: Mapping[str, Any],
        data: Mapping[str, Any],
        ts: int | None = None,
        conn: SimConnection | None = None,
    ) -> None:
        """Send a ``data`` push exactly as given (any channel or params, subscribed or not).

        :param ts: the envelope ``ts``; now when ``None``.
        """
        frame = {
            "type": "data",
            "channel": channel,
            "params": dict(params),
            "data": dict(data),
            "ts": now_ms() if ts is None else ts,
        }
        self.push(frame, conn)
