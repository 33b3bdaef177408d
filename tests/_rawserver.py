"""A WebSocket server that writes what a test gives it, byte for byte, and a frame builder.

For tests that need frames no well-behaved server sends, or exact control over when each
byte arrives. The ``raw`` fixture (in ``conftest.py``) gives a started server.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from cmcsync._frames import FrameError, FrameReader

__all__ = ["RawServer", "frame", "upgrade"]


def frame(payload: bytes, opcode: int = 1, *, fin: bool = True, mask: bytes = b"") -> bytes:
    """One WebSocket frame as a server (or, with ``mask``, a client) writes it."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade(sock: socket.socket) -> None:
    """Read a client's WebSocket handshake request from ``sock`` and accept it (RFC 6455)."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(4096)
    nonce = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    # RFC 6455 fixes SHA-1 for the handshake; no secret is involved.
    accept = base64.b64encode(hashlib.sha1(nonce + _GUID, usedforsecurity=False).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


class RawServer:
    """A WebSocket server on 127.0.0.1 that writes what a test gives it, byte for byte.

    Each connection gets a welcome, then whatever :meth:`send` is given; the frames the
    client sends are unmasked and kept in :attr:`received` as (opcode, payload), and a
    close frame is answered.

    :param answer: given the payload of each text frame the client sends, returns the bytes
        to write back (or ``None``).
    """

    def __init__(self, answer: Callable[[bytes], bytes | None] | None = None) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v1"
        self.received: list[tuple[int, bytes]] = []
        self.handshakes = 0
        self._cond = threading.Condition()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upgrade(sock)
            sock.sendall(frame(b'{"type":"welcome","ping_interval_ms":10000}'))
            with self._cond:
                self.handshakes += 1
                self._conns.append(sock)
                self._cond.notify_all()
            reader = threading.Thread(target=self._read, args=(sock,), daemon=True)
            reader.start()
            self._threads.append(reader)

    def _read(self, sock: socket.socket) -> None:
        reader = FrameReader(sock.recv, 1 << 20)
        while True:
            batch: list[tuple[int, bytes]] = []
            try:
                control = reader.read(batch, 100)
            except (FrameError, OSError):
                return
            with self._cond:
                self.received += batch + ([control] if control else [])
                self._cond.notify_all()
            if self._answer is not None:
                for opcode, payload in batch:
                    reply = self._answer(payload) if opcode == 0x1 else None
                    if reply:
                        sock.sendall(reply)
            if control is not None and control[0] == 0x8:
                sock.sendall(frame(control[1][:2], 0x8))  # answer the close, as servers do
                return

    def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"server: still waiting; received {self.received}")

    def send(self, data: bytes) -> None:
        """Write ``data`` on the latest connection."""
        self.wait(lambda: self._conns)
        self._conns[-1].sendall(data)

    def drop(self) -> None:
        """Close the latest connection without a close frame."""
        self.wait(lambda: self._conns)
        # Shut down first: a plain close waits for this server's own reader of the socket.
        self._conns[-1].shutdown(socket.SHUT_RDWR)
        self._conns[-1].close()

    def close(self) -> None:
        self._stop.set()
        for sock in [self._listener, *self._conns]:
            sock.close()
        for thread in self._threads:
            thread.join(2)
