"""One WebSocket connection slot: its socket, reader thread, keep-alive and reconnects.

This is the only module that imports ``websocket`` (websocket-client); its exceptions are
translated here into cmcsync's, raised ``from`` the original. Above this module nothing
knows which library carries the frames.

A :class:`Connection` lives from :meth:`Connection.start` to :meth:`Connection.close` and
survives any number of sockets. Its reader thread (``cmcsync-reader-N``) connects, reads
frames in batches and hands them to its :class:`Handler`, and reconnects with backoff when
the socket ends.

Given a :class:`ReadHost` (the dispatcher thread), the reader thread lends it the open
socket whenever that thread is idle: the host then reads the frames itself, between its
plugin calls, and no thread has to be woken per frame. The reader thread stands by meanwhile
and takes the reading back once it finds the host away from the socket for longer than
:data:`STALL_AFTER` (a slow plugin), or stopped; it lends again once the host is idle.
Standing by, it looks at the host every :data:`PATROL` while the host keeps up, and at
:data:`STALL_AFTER` after the host left for a plugin call, so a slow plugin leaves the socket
unread for about :data:`PATROL` at most; once the host has waited on idle sockets for
:data:`DOZE_AFTER`, it does not look until the host wakes it, so an idle client does not
wake up at all. The socket's end, found by either thread, is always handled by the reader
thread.

While a socket is open, a keep-alive thread (``cmcsync-keepalive-N``) sends a JSON ping
every ping interval and declares the socket dead when nothing at all has come back within
the pong timeout after a ping, even if TCP still looks open. :meth:`Connection.ping` sends
one on demand and waits for the pong that echoes its id.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import websocket

from cmcsync import _protocol
from cmcsync._frames import (
    DEFAULT_MAX_FRAME_BYTES,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TOO_LARGE,
    FrameError,
    FrameReader,
    FrameTooLarge,
)
from cmcsync.config import Backoff, Timeouts
from cmcsync.exceptions import (
    AuthError,
    CmcsyncError,
    CmcsyncTimeoutError,
    ConfigError,
    ConnectionFailedError,
    GaveUpError,
)

__all__ = [
    "DOZE_AFTER",
    "PATROL",
    "STALL_AFTER",
    "Connection",
    "ConnectionState",
    "Handler",
    "ReadHost",
    "redact_url",
]

log = logging.getLogger("cmcsync.connection")

# What websocket-client's trace (``websocket.enableTrace(True)``) dumps at DEBUG includes the
# handshake request, key header and all, and the proxy's CONNECT request with its
# credentials; the query string may carry the key too. These patterns find the secrets.
_SECRETS = (
    re.compile(
        rf"((?:{re.escape(_protocol.API_KEY_HEADER)}|Proxy-Authorization|Authorization)"
        r"[ \t]*:[ \t]*)[^\r\n]+",
        re.IGNORECASE,
    ),
    re.compile(rf"({re.escape(_protocol.API_KEY_ENV)}=)[^&\s#]+", re.IGNORECASE),
)


def redact_secrets(text: str) -> str:
    """Return ``text`` with API key and proxy credential values replaced by ``[redacted]``."""
    for pattern in _SECRETS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class _RedactSecrets(logging.Filter):
    """Scrub secrets from the records of websocket-client's own logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_redaction(logger: logging.Logger) -> None:
    # Idempotent, so a reloaded module does not stack filters.
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets())


install_redaction(logging.getLogger("websocket"))

# OpenSSL's verify codes for a chain that ends in a CA the client does not trust:
# DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY.
_UNKNOWN_ISSUER = frozenset({18, 19, 20})

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY

#: A received frame: (opcode, payload bytes).
Frame = tuple[int, bytes]

#: Seconds the host of a lent socket may stay away from it (in a plugin) before the
#: reader thread takes the reading back.
STALL_AFTER = 0.02
#: Seconds between two looks of a standing-by reader thread at a host that was keeping up
#: at the last look. Each look wakes a thread, so this bounds both what standing by costs
#: (10 wake-ups a second) and how long a slow plugin can leave the socket unread.
PATROL = 0.1
#: Seconds of the host waiting on an idle socket after which its reader thread stops
#: looking: the host wakes it when it gets busy again.
DOZE_AFTER = 0.5


class ConnectionState(str, enum.Enum):
    """Where a connection slot stands."""

    #: Created, not started.
    IDLE = "idle"
    #: Opening a socket (TCP, TLS, WebSocket handshake).
    CONNECTING = "connecting"
    #: A socket is open and being read.
    OPEN = "open"
    #: Waiting before the next attempt.
    BACKOFF = "backoff"
    #: Closed by the user; final.
    CLOSED = "closed"
    #: Stopped by a fatal error (key rejected, retries exhausted); final.
    FAILED = "failed"


class Handler(Protocol):
    """What a :class:`Connection` tells its owner.

    Every method runs on the reader thread, except :meth:`on_frames`, which the host runs
    for the frames it reads from a lent socket. Batches are handed over in the order they
    were read, but the host may still be inside the call for one batch when the reader
    thread, having taken the reading back, makes the call for the next.
    """

    def on_open(self, conn: Connection, reconnect: bool) -> None:
        """A socket opened; ``reconnect`` is false for the first one."""

    def on_frames(self, conn: Connection, frames: Sequence[Frame]) -> None:
        """A batch of text and binary frames arrived, in order."""

    def on_close(
        self, conn: Connection, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        """An open socket ended; ``code`` is ``None`` without a close frame."""

    def on_attempt_failed(self, conn: Connection, reason: str, will_retry: bool) -> None:
        """A connection attempt failed before the socket opened."""

    def on_fatal(self, conn: Connection, error: CmcsyncError) -> None:
        """The slot stopped for good; ``error`` says why (AuthError, GaveUpError)."""


class ReadHost(Protocol):
    """A thread that can read lent sockets: see the module docstring."""

    def idle(self) -> bool:
        """Whether the host has nothing to do: lending it a socket then costs no delay."""

    def borrow(self, conn: Connection, fd: int) -> bool:
        """Start reading ``conn`` (by calling :meth:`Connection.read_lent`).

        :returns: whether the socket was taken (false once the host has stopped).
        """

    def give_back(self, conn: Connection) -> None:
        """Stop reading ``conn``'s socket."""

    def stalls_in(self) -> float:
        """Seconds until the reader thread should look again: while the host is away from
        its sockets, until it has been away for :data:`STALL_AFTER` (``0.0`` once it has,
        or has stopped); while it waits on them, :data:`PATROL`; infinity once it has been
        idle for :data:`DOZE_AFTER` (it then calls :meth:`Connection.wake_standby` when it
        stops waiting)."""


def redact_url(url: str) -> str:
    """Return ``url`` without its query string and credentials, where a key could hide."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed port or IPv6 literal: show no more than the scheme
        return f"{urlsplit(url).scheme or 'unknown'}://<unparsable>"
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback IP address.

    Names are not resolved: ``127.0.0.1.example.com`` is someone else's host.
    """
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_url(url: str, *, allow_insecure: bool) -> None:
    """Refuse URLs cmcsync cannot or should not use.

    :raises ConfigError: for a scheme other than ``ws``/``wss``, or a plain ``ws://`` URL to a
        host other than this machine unless ``allow_insecure`` is set.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"url must be a ws:// or wss:// URL with a host, got {redact_url(url)!r}", param="url"
        )
    if parts.scheme == "ws" and not is_loopback(parts.hostname) and not allow_insecure:
        raise ConfigError(
            f"refusing plain ws:// to {parts.hostname}: the API key would travel unencrypted; "
            "use wss:// or pass allow_insecure=True",
            param="url",
        )


class Connection:
    """One connection slot; see the module docstring.

    :param url: the endpoint.
    :param api_key: sent only in the handshake header; never logged.
    :param handler: receives frames and lifecycle calls on the reader thread.
    :param index: a number that names the threads.
    :param max_frame_bytes: the largest frame (or fragmented message) accepted, in bytes. A
        larger one is refused from its header, before its payload is read: the socket is
        closed with 1009 and replaced, and the frame is counted as malformed (``too_large``).
    :param host: a thread to lend the open socket to while it is idle, or ``None``.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        handler: Handler,
        *,
        backoff: Backoff,
        timeouts: Timeouts,
        index: int = 0,
        batch_size: int = 256,
        sslopt: Mapping[str, Any] | None = None,
        proxy: str | None = None,
        next_id: Callable[[], int] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        host: ReadHost | None = None,
    ) -> None:
        self.url = url
        self._header = [f"{_protocol.API_KEY_HEADER}: {api_key}"]
        self._handler = handler
        self._backoff = backoff
        self._timeouts = timeouts
        self.index = index
        self._batch_size = batch_size
        self._sslopt = dict(sslopt or {})
        self._proxy = urlsplit(proxy) if proxy else None
        self._next_id = next_id or itertools.count(1).__next__
        self.max_frame_bytes = max_frame_bytes

        self.state = ConnectionState.IDLE
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._keepalive: threading.Thread | None = None
        self._ka_wake = threading.Event()
        self._ping_interval = timeouts.ping_interval
        self._last_rx = 0.0
        self._busy = False
        self._dead_reason: str | None = None
        # Pings sent by ping(), by request id, until their pong comes or their caller gives up.
        self._pings: dict[int, _PendingPing] = {}
        # The open socket's frame reader; whoever reads it (the reader thread, or the host
        # while _lent) does so alone: _lent changes only under _read_lock, and the host reads
        # only under it.
        self._host = host
        self._read_lock = threading.Lock()
        self._frames: FrameReader | None = None
        self._pending: Callable[[], int] | None = None
        self._counted = (0, 0)
        self._lent = False
        # The end of the socket the host found, with the frames it read before it.
        self._handed: tuple[list[Frame], tuple[int | None, str]] | None = None
        self._standby = threading.Event()

        # Counters read by Client.stats(). The traffic counters are written by whichever
        # thread reads the socket (one at a time); pings_sent by the keep-alive and ping().
        self.frames_received = 0
        self.bytes_received = 0
        self.frames_sent = 0
        self.pings_sent = 0
        # Times the socket was lent to the host, and taken back from it because it stayed
        # away too long (a slow plugin) or stopped.
        self.lends = 0
        self.takebacks = 0
        self.connects = 0
        self.failed_attempts = 0
        self.last_close_code: int | None = None
        self.last_close_reason = ""
        self.connected_since: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.index} {redact_url(self.url)} {self.state.value}>"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread; it connects at once."""
        if self._reader is not None:
            return
        self._reader = threading.Thread(
            target=self._run, name=f"cmcsync-reader-{self.index}", daemon=True
        )
        self._reader.start()

    def request_stop(self) -> None:
        """Stop reconnecting and drop the socket, without waiting (:meth:`close` joins)."""
        self._stop.set()
        self._ka_wake.set()
        self._standby.set()
        self._abort()

    def close(self, timeout: float) -> None:
        """Close the socket politely (close 1000) and join every thread this slot started."""
        self._stop.set()
        self._ka_wake.set()
        self._standby.set()
        ws = self._ws
        if ws is not None and ws.connected:
            try:
                ws.send_close(1000, b"client closing")
            except (websocket.WebSocketException, OSError):
                pass
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(min(timeout, 1.0))
            if reader.is_alive():
                self._abort()
                reader.join(timeout)
        if self.state is not ConnectionState.FAILED:
            self.state = ConnectionState.CLOSED

    @property
    def open(self) -> bool:
        """Whether a socket is open right now."""
        return self.state is ConnectionState.OPEN

    @property
    def lent(self) -> bool:
        """Whether the socket is lent to the host now (the host reads it)."""
        return self._lent

    def recycle(self, reason: str) -> None:
        """Drop the current socket so the reader reconnects (and replays) at once."""
        ws = self._ws
        if ws is not None and self.open:
            self._dead_reason = reason
            log.warning("connection %d: %s; replacing it", self.index, reason)
            ws.abort()

    def set_ping_interval(self, seconds: float) -> None:
        """Use the server's ping interval (from its welcome) for this socket."""
        self._ping_interval = seconds
        self._ka_wake.set()

    def send(self, text: str) -> bool:
        """Send one text frame; return whether it was handed to the socket."""
        ws = self._ws
        if ws is None or not self.open:
            return False
        try:
            ws.send(text)
        except (websocket.WebSocketException, OSError) as exc:
            log.debug("send failed on connection %d: %s", self.index, exc)
            return False
        self.frames_sent += 1
        return True

    def ping(self, timeout: float) -> float:
        """Send a JSON ping on the open socket and wait for the pong that echoes its id.

        :param timeout: seconds to wait for the pong.
        :returns: the round trip in seconds, from the send to the read that brought the pong.
        :raises ConnectionFailedError: if no socket is open, or it ends before the pong.
        :raises CmcsyncTimeoutError: if no pong came within ``timeout`` seconds.
        """
        request_id = self._next_id()
        pending = _PendingPing()
        # Registered before the send, so a pong that beats this thread back is not missed.
        with self._lock:
            self._pings[request_id] = pending
        try:
            sent = time.monotonic()
            if not self.send(_protocol.ping_request(request_id)):
                raise ConnectionFailedError(f"connection {self.index} is not open")
            self.pings_sent += 1
            if not pending.answered.wait(timeout):
                raise CmcsyncTimeoutError(f"no pong within {timeout:g} s")
        finally:
            with self._lock:
                del self._pings[request_id]
        if pending.error is not None:
            raise pending.error
        return pending.received_at - sent

    # --- reader thread --------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        reconnect = False
        while not self._stop.is_set():
            self.state = ConnectionState.CONNECTING
            try:
                ws = self._connect()
            except _AttemptFailed as failed:
                if self._stop.is_set():
                    break
                failures += 1
                self.failed_attempts += 1
                fatal = failed.fatal or self._give_up(failures, failed.reason)
                self._handler.on_attempt_failed(self, failed.reason, fatal is None)
                if fatal is not None:
                    self._fail(fatal)
                    return
                if not self._pause(failures, long=failed.long, why=failed.reason):
                    break
                continue

            self._session(ws, reconnect)
            reconnect = True
            lived = time.monotonic() - (self.connected_since or time.monotonic())
            self.connected_since = None
            if lived >= self._backoff.reset_after:
                failures = 0
            code, reason = self.last_close_code, self.last_close_reason
            why = _protocol.describe_close(code, reason)
            if self._stop.is_set():
                self._handler.on_close(self, code, reason, False)
                break
            if code in _protocol.FATAL_CLOSE_CODES:
                fatal = AuthError(f"{why}: {_protocol.auth_hint(code)}", close_code=code)
            else:
                failures += 1
                fatal = self._give_up(failures, why)
            self._handler.on_close(self, code, reason, fatal is None)
            if fatal is not None:
                self._fail(fatal)
                return
            long = code in _protocol.LONG_BACKOFF_CLOSE_CODES
            if not self._pause(failures, long=long, why=why):
                break
        if self.state is not ConnectionState.FAILED:
            self.state = ConnectionState.CLOSED

    def _give_up(self, failures: int, why: str) -> GaveUpError | None:
        """The error that ends the slot once ``Backoff.max_attempts`` failures are reached."""
        limit = self._backoff.max_attempts
        if limit is not None and failures >= limit:
            return GaveUpError(f"gave up after {failures} failed attempts; last: {why}")
        return None

    def _pause(self, failures: int, *, long: bool, why: str) -> bool:
        """Wait out the backoff; return false if the slot was closed meanwhile."""
        delay = self._backoff.compute(failures, long=long)
        self.state = ConnectionState.BACKOFF
        log.info(
            "connection %d: %s; reconnecting in %.2f s (attempt %d)",
            self.index,
            why,
            delay,
            failures + 1,
        )
        return not self._stop.wait(delay)

    def _fail(self, error: CmcsyncError) -> None:
        self.state = ConnectionState.FAILED
        log.error("connection %d stopped: %s", self.index, error)
        self._handler.on_fatal(self, error)

    def _connect(self) -> websocket.WebSocket:
        ws = websocket.WebSocket(
            enable_multithread=True,
            # The JSON decoder rejects invalid text anyway; websocket-client's own UTF-8
            # check is pure Python and costs more than everything else per frame.
            skip_utf8_validation=True,
            sslopt=self._sslopt or None,
        )
        options: dict[str, Any] = {
            "header": self._header,
            "timeout": self._timeouts.connect,
            "suppress_origin": True,
        }
        if self._proxy is not None:
            options.update(
                http_proxy_host=self._proxy.hostname,
                http_proxy_port=self._proxy.port or 8080,
                proxy_type="http",
            )
            if self._proxy.username:
                options["http_proxy_auth"] = (self._proxy.username, self._proxy.password or "")
        target = redact_url(self.url)
        # The proxy as host:port, never with its credentials.
        proxy = f"{self._proxy.hostname}:{self._proxy.port or 8080}" if self._proxy else None
        via = f" through the proxy {proxy}" if proxy else ""
        try:
            ws.connect(self.url, **options)
        except websocket.WebSocketBadStatusException as exc:
            status = exc.status_code
            reason = f"handshake refused with HTTP {status}"
            if status in _protocol.FATAL_HTTP_STATUSES:
                fatal = AuthError(
                    f"{reason} by {target}: {_protocol.auth_hint(status)}", http_status=status
                )
                fatal.__cause__ = exc
                raise _AttemptFailed(reason, fatal=fatal) from exc
            raise _AttemptFailed(
                reason, long=status in _protocol.LONG_BACKOFF_HTTP_STATUSES
            ) from exc
        except websocket.WebSocketAddressException as exc:
            host = proxy or target
            raise _AttemptFailed(f"cannot resolve the host of {host}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            # Retried like any failed attempt (a proxy or a certificate may be fixed while
            # the client waits), but said plainly, with what the user can do about it.
            reason = f"TLS certificate of {target} not accepted: {exc.verify_message or exc}"
            if exc.verify_code in _UNKNOWN_ISSUER:
                reason += "; if the server's CA is a private one, pass sslopt={'ca_certs': path}"
            raise _AttemptFailed(reason) from exc
        except websocket.WebSocketProxyException as exc:
            raise _AttemptFailed(f"cannot open a tunnel to {target}{via}: {exc}") from exc
        except (websocket.WebSocketException, OSError) as exc:
            if isinstance(exc, websocket.WebSocketException) and "loading failed" in str(exc):
                # A CA or client certificate file that cannot be read will not get better.
                bad = ConfigError(f"bad TLS settings: {exc}", param="sslopt")
                bad.__cause__ = exc
                raise _AttemptFailed(str(exc), fatal=bad) from exc
            # Handshake timeouts, refused connections, TLS failures: all worth another try.
            raise _AttemptFailed(f"cannot connect to {target}{via}: {_describe(exc)}") from exc
        if ws.sock is not None:
            ws.sock.settimeout(None)
        return ws

    def _session(self, ws: websocket.WebSocket, reconnect: bool) -> None:
        """Run one open socket until it ends; record how it ended."""
        with self._lock:
            self._ws = ws
            self._dead_reason = None
            self._last_rx = time.monotonic()
            self._ping_interval = self._timeouts.ping_interval
        self.connects += 1
        self.connected_since = time.monotonic()
        self.state = ConnectionState.OPEN
        session_done = threading.Event()
        self._keepalive = threading.Thread(
            target=self._keep_alive,
            args=(ws, session_done),
            name=f"cmcsync-keepalive-{self.index}",
            daemon=True,
        )
        self._keepalive.start()
        code: int | None = None
        reason = ""
        try:
            self._handler.on_open(self, reconnect)
            code, reason = self._read(ws)
        finally:
            session_done.set()
            self._ka_wake.set()
            self._keepalive.join()
            self._keepalive = None
            with self._lock:
                self._ws = None
            ws.shutdown()
            if self._dead_reason is not None:
                code, reason = None, self._dead_reason
            self.last_close_code, self.last_close_reason = code, reason
            self._fail_pings(code, reason)
            self.state = ConnectionState.CONNECTING

    def _read(self, ws: websocket.WebSocket) -> tuple[int | None, str]:
        # Frames are cut out of large reads by FrameReader rather than read one by one
        # with websocket-client, which needs two or three recv calls per frame; sending
        # (requests, pongs, close) still goes through websocket-client.
        sock = ws.sock
        if sock is None:
            return None, "connection lost: no socket"
        self._frames = FrameReader(sock.recv, self.max_frame_bytes)
        self._counted = (0, 0)
        # A TLS socket may hold decrypted bytes that select() cannot see.
        self._pending = getattr(sock, "pending", None)
        host = self._host
        try:
            while True:
                batch, end, _ = self._read_batch(-1)
                # Asked before the batch is handed over, which keeps the host busy a while.
                lend = host is not None and end is None and host.idle()
                if batch:
                    self._deliver(batch)
                if end is not None:
                    return end
                if lend and host is not None:
                    end = self._lend(host, sock.fileno())
                    if end is not None:
                        return end
        finally:
            if self._lent and host is not None:
                with self._read_lock:
                    self._lent = False
                host.give_back(self)
            self._frames = None
            self._pending = None

    def _read_batch(self, recvs: int) -> tuple[list[Frame], tuple[int | None, str] | None, bool]:
        """Read one batch of frames and answer a control frame after it.

        :param recvs: passed to :meth:`FrameReader.read`.
        :returns: the frames, how the socket ended (close code, reason) if it did, and
            whether the buffer may hold more complete frames.
        """
        reader = self._frames
        assert reader is not None
        batch: list[Frame] = []
        try:
            control = reader.read(batch, self._batch_size, recvs)
        except FrameTooLarge as exc:
            self._account(reader)
            batch.append((OPCODE_TOO_LARGE, str(exc).encode()))
            self._send_close(1009, b"frame too large")
            return batch, (1009, str(exc)), False
        except (FrameError, websocket.WebSocketException, OSError) as exc:
            self._account(reader)
            if self._stop.is_set():
                return batch, (1000, "client closing"), False
            return batch, (None, f"connection lost: {_describe(exc)}"), False
        self._last_rx = time.monotonic()
        self._account(reader)
        if control is None:
            return batch, None, len(batch) >= self._batch_size
        opcode, data = control
        if opcode == OPCODE_CLOSE:
            self._send_close(1000, b"")
            return batch, _parse_close(data), False
        if opcode == OPCODE_PING:
            ws = self._ws
            try:
                if ws is not None:
                    ws.pong(data)
            except (websocket.WebSocketException, OSError):
                pass  # the read that follows finds the socket gone
        return batch, None, True

    def _account(self, reader: FrameReader) -> None:
        frames, payload = self._counted
        self.frames_received += reader.frames - frames
        self.bytes_received += reader.payload_bytes - payload
        self._counted = (reader.frames, reader.payload_bytes)

    def _send_close(self, status: int, reason: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.send_close(status, reason)
        except (websocket.WebSocketException, OSError):
            pass

    # --- lending the socket to the host ---------------------------------------------------

    def _lend(self, host: ReadHost, fd: int) -> tuple[int | None, str] | None:
        """Lend the socket to the host, and stand by until it comes back.

        :returns: how the socket ended, if the host found out; ``None`` when this thread
            reads again (the host stalled or stopped, or the slot is closing).
        """
        with self._read_lock:
            if self._stop.is_set() or not host.borrow(self, fd):
                return None
            self._lent = True
            self.lends += 1
        standby = self._standby
        while True:
            wait = host.stalls_in()
            standby.wait(None if wait == math.inf else max(wait, 0.001))
            standby.clear()
            with self._read_lock:
                handed = self._handed
                if handed is not None:
                    self._handed = None
                    break
                if self._stop.is_set():
                    self._lent = False
                elif host.stalls_in() <= 0.0:
                    self._lent = False
                    self.takebacks += 1
                else:
                    continue
            host.give_back(self)
            return None
        batch, end = handed
        if batch:
            self._deliver(batch)
        return end

    def wake_standby(self) -> None:
        """Have the reader thread, standing by for a lent socket, check on the host now."""
        self._standby.set()

    def read_lent(self, readable: bool) -> bool:
        """Read a batch from the lent socket and hand it over; run by the host.

        The host calls this when the socket is readable, once when it was just lent, and
        again at once while it returns true. Reads at most once from the socket.

        :param readable: whether the socket is known to be readable.
        :returns: whether more frames may be waiting in the buffer.
        """
        with self._read_lock:
            if not self._lent:
                return False
            pending = self._pending
            recvs = 1 if readable or (pending is not None and pending()) else 0
            batch, end, more = self._read_batch(recvs)
            if end is not None:
                # The reader thread handles the end, and hands over what came before it.
                self._lent = False
                self._handed = (batch, end)
        if end is not None:
            host = self._host
            if host is not None:
                host.give_back(self)
            self._standby.set()
            return False
        if batch:
            # Not _deliver: while the host is in the plugins, the reader thread reads, so the
            # keep-alive must not take that time as the reader's.
            self._handler.on_frames(self, batch)
        return more or (pending is not None and pending() > 0)

    def _deliver(self, batch: Sequence[Frame]) -> None:
        self._busy = True
        try:
            self._handler.on_frames(self, batch)
        finally:
            self._busy = False
            # Time spent handing over is not silence from the server.
            self._last_rx = time.monotonic()

    def answer_ping(self, request_id: int | None, received_at: float) -> None:
        """The handler read a pong on this connection: wake the :meth:`ping` waiting for it.

        :param request_id: the id the pong echoes.
        :param received_at: when the read that brought it returned (``time.monotonic()``).
        """
        if request_id is None or not self._pings:
            return
        with self._lock:
            pending = self._pings.get(request_id)
        if pending is not None:
            pending.received_at = received_at
            pending.answered.set()

    def _fail_pings(self, code: int | None, reason: str) -> None:
        """The socket ended: wake every ping() still waiting, with the reason."""
        with self._lock:
            waiting = [p for p in self._pings.values() if not p.answered.is_set()]
        for pending in waiting:
            pending.error = ConnectionFailedError(
                f"the connection closed before the pong: {_protocol.describe_close(code, reason)}",
                close_code=code,
            )
            pending.answered.set()

    def _abort(self) -> None:
        # websocket-client's abort() does nothing once send_close() has run (it checks its
        # connected flag), so shut the socket down directly: that wakes a blocked reader.
        ws = self._ws
        sock = ws.sock if ws is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- keep-alive thread ----------------------------------------------------------------

    def _keep_alive(self, ws: websocket.WebSocket, done: threading.Event) -> None:
        next_ping = time.monotonic() + self._ping_interval
        interval = self._ping_interval
        unanswered_since: float | None = None
        pong_timeout = self._timeouts.pong
        while not done.is_set():
            now = time.monotonic()
            if self._ping_interval != interval:
                next_ping += self._ping_interval - interval
                interval = self._ping_interval
            wait = next_ping - now
            if unanswered_since is not None:
                wait = min(wait, unanswered_since + pong_timeout - now)
            self._ka_wake.wait(max(wait, 0.0))
            self._ka_wake.clear()
            if done.is_set() or self._stop.is_set():
                return
            now = time.monotonic()
            if unanswered_since is not None and self._last_rx >= unanswered_since:
                unanswered_since = None
            if (
                unanswered_since is not None
                and not self._busy
                and now - unanswered_since >= pong_timeout
            ):
                self._dead_reason = (
                    f"keep-alive timeout: nothing received for {now - unanswered_since:.1f} s "
                    "after a ping"
                )
                log.warning("connection %d: %s; replacing it", self.index, self._dead_reason)
                ws.abort()
                return
            if now >= next_ping:
                if self.send(_protocol.ping_request(self._next_id())):
                    self.pings_sent += 1
                    if unanswered_since is None:
                        unanswered_since = now
                next_ping = now + interval


class _PendingPing:
    """A ping() waiting for its pong: set once the pong is read or the socket ends."""

    __slots__ = ("answered", "error", "received_at")

    def __init__(self) -> None:
        self.answered = threading.Event()
        #: When the read that brought the pong returned (``time.monotonic()``).
        self.received_at = 0.0
        #: Why no pong will come, when the socket ended first.
        self.error: ConnectionFailedError | None = None


class _AttemptFailed(Exception):
    """A connection attempt failed; ``fatal`` is set when retrying is pointless."""

    def __init__(self, reason: str, *, long: bool = False, fatal: CmcsyncError | None = None):
        super().__init__(reason)
        self.reason = reason
        self.long = long
        self.fatal = fatal


def _parse_close(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return 1005, ""
    code = int.from_bytes(data[:2], "big")
    return code, data[2:].decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__
