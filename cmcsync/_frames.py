"""Reading WebSocket frames from a socket in large reads: the reader thread's hot path.

websocket-client reads one frame with two or three ``recv`` calls (header, length,
payload) and builds several objects per frame; under load that is most of what a message
costs. :class:`FrameReader` reads whatever the socket holds, up to 64 KiB at a time, and
cuts every complete frame out of it, so one system call serves a whole burst. It refuses a
frame larger than its limit from the frame's header, before reading the payload.

It reads server frames as RFC 6455 defines them: text and binary messages, possibly
fragmented into continuation frames (with control frames between the fragments), and the
control frames close, ping and pong. Reserved bits (no extension is ever negotiated),
unknown opcodes, fragmented or oversized control frames and stray continuations are
protocol errors: the connection cannot be trusted past them. A masked frame, which a server
must not send, is unmasked and read all the same, as websocket-client does. Payloads are
returned as bytes: UTF-8 is left to the JSON decoder, which checks it anyway.

Nothing here knows websocket-client; the connection hands over the socket's ``recv``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_PING",
    "OPCODE_PONG",
    "OPCODE_TEXT",
    "OPCODE_TOO_LARGE",
    "ConnectionEnded",
    "FrameError",
    "FrameReader",
    "FrameTooLarge",
]

OPCODE_CONT = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
#: Not a wire opcode: the reader hands over a frame it refused for its size with this one,
#: the error's text as payload, so the frame's owner can count and report it.
OPCODE_TOO_LARGE = 0x100

_CONTROL = frozenset({OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG})
# First header byte of an unfragmented text / binary frame: FIN set, no reserved bits.
_FIN_DATA = (0x80 | OPCODE_TEXT, 0x80 | OPCODE_BINARY)
#: The default largest frame (or fragmented message) a connection accepts: 1 MiB.
DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: Bytes asked of the socket per read; a burst of ~400-byte frames fills it with ~160.
READ_SIZE = 65536
# Reads for one large frame are capped, so a 16 MiB limit never means a 16 MiB recv buffer.
_MAX_READ = 1 << 20


class FrameError(Exception):
    """The server broke the WebSocket framing; the connection must be dropped."""


class FrameTooLarge(FrameError):
    """A frame or message is larger than the reader's limit.

    :param size: the size announced by the frame header (or reached by the fragments).
    :param limit: the limit.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes is larger than max_frame_bytes={limit}")
        self.size = size
        self.limit = limit


class ConnectionEnded(FrameError):
    """The peer closed the TCP connection without a close frame."""


def _unmask(mask: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if not length:
        return payload
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


class FrameReader:
    """Cut complete frames out of a socket's byte stream.

    Not thread-safe: one thread at a time reads with it, for the lifetime of one socket
    (a connection hands it between its reader thread and the dispatcher thread).

    :param recv: the socket's ``recv`` (blocking); an empty result means the peer is gone.
    :param max_frame_bytes: the largest frame, or fragmented message, accepted.

    :ivar frames: frames read so far (data fragments and control frames).
    :ivar payload_bytes: payload bytes of those frames.
    """

    def __init__(self, recv: Callable[[int], bytes], max_frame_bytes: int) -> None:
        self._recv = recv
        self._limit = max_frame_bytes
        self._buf = b""
        self._pos = 0
        # A fragmented message being assembled: its opcode and the fragments so far.
        self._frag_opcode: int | None = None
        self._frag_parts: list[bytes] = []
        self._frag_size = 0
        self.frames = 0
        self.payload_bytes = 0

    def read(
        self, batch: list[tuple[int, bytes]], limit: int, recvs: int = -1
    ) -> tuple[int, bytes] | None:
        """Append complete messages to ``batch``; stop at a control frame.

        Blocks only while ``batch`` is empty: once it holds a message and the buffer has no
        further complete frame, it returns, so what arrived is handed over before waiting.

        :param batch: receives ``(opcode, payload)`` of text and binary messages, in order.
        :param limit: return once ``batch`` holds this many messages.
        :param recvs: how many times the socket may be read; ``-1`` (the default) reads
            until a message or control frame is complete. ``0`` only cuts what is already
            buffered, and ``1`` reads once, for a socket known to be readable: either may
            return with ``batch`` empty, keeping a partial frame for the next call.
        :returns: ``(opcode, payload)`` of a control frame (close, ping, pong) that came
            after the messages in ``batch``, or ``None``.
        :raises FrameTooLarge: for a frame or message larger than ``max_frame_bytes``,
            refused from its header; the messages before it are in ``batch``.
        :raises FrameError: for broken framing, or :class:`ConnectionEnded` at end of stream.
        :raises OSError: from the socket.
        """
        buf = self._buf
        pos = self._pos
        max_bytes = self._limit
        append = batch.append
        try:
            while True:
                size = len(buf)
                if size - pos >= 4:
                    # The common case, inline: a whole unmasked text or binary frame of less
                    # than 64 KiB, already in the buffer.
                    b1 = buf[pos]
                    length = buf[pos + 1]
                    if length < 126:
                        start = pos + 2
                    elif length == 126:
                        length = buf[pos + 2] << 8 | buf[pos + 3]
                        start = pos + 4
                    else:
                        start = -1
                    if start > 0 and b1 in _FIN_DATA:
                        end = start + length
                        if end <= size and length <= max_bytes and self._frag_opcode is None:
                            append((b1 & 0x0F, buf[start:end]))
                            self.frames += 1
                            self.payload_bytes += length
                            pos = end
                            if len(batch) >= limit:
                                return None
                            continue
                if size - pos >= 2:
                    parsed = self._frame(buf, pos, append)
                    if parsed is not None:
                        pos, control = parsed
                        if control is not None:
                            return control
                        if len(batch) >= limit:
                            return None
                        continue
                # No complete frame left in the buffer.
                if batch or not recvs:
                    return None
                if recvs < 0:
                    buf = self._fill(buf, pos)
                else:
                    recvs -= 1
                    buf = self._fill_once(buf, pos)
                pos = 0
        finally:
            self._buf = buf
            self._pos = pos

    # What follows runs only for what the loop above does not take: masked frames,
    # fragments, control frames, large frames and a frame not complete in the buffer yet.

    def _frame(
        self, buf: bytes, pos: int, append: Callable[[tuple[int, bytes]], None]
    ) -> tuple[int, tuple[int, bytes] | None] | None:
        """Read the frame at ``pos`` if it is complete.

        :returns: ``None`` if it is not; else the position after it and the frame itself if
            it is a control frame. A message it completes goes to ``append``.
        :raises FrameTooLarge: as soon as the header announces too large a frame.
        """
        size = len(buf)
        head = _header(buf, pos, self._limit)
        if head is None:
            return None
        start, length, mask = head
        end = start + length
        if end > size:
            return None
        b1 = buf[pos]
        if b1 & 0x70:
            raise FrameError("a frame has reserved bits set, but no extension was negotiated")
        fin = b1 & 0x80
        opcode = b1 & 0x0F
        payload = buf[start:end]
        if mask:
            payload = _unmask(mask, payload)
        self.frames += 1
        self.payload_bytes += length
        if opcode in _CONTROL:
            if not fin or length > 125:
                raise FrameError("a control frame is fragmented or longer than 125 bytes")
            return end, (opcode, payload)
        if opcode == OPCODE_CONT:
            if self._frag_opcode is None:
                raise FrameError("a continuation frame came with no message to continue")
        elif opcode in (OPCODE_TEXT, OPCODE_BINARY):
            if self._frag_opcode is not None:
                raise FrameError("a new message began inside a fragmented one")
            if fin:
                append((opcode, payload))
                return end, None
            self._frag_opcode = opcode
        else:
            raise FrameError(f"unknown opcode {opcode:#x}")
        self._frag_size += length
        if self._frag_size > self._limit:
            raise FrameTooLarge(self._frag_size, self._limit)
        self._frag_parts.append(payload)
        if fin:
            append((self._frag_opcode, b"".join(self._frag_parts)))
            self._frag_opcode = None
            self._frag_parts = []
            self._frag_size = 0
        return end, None

    def _fill_once(self, buf: bytes, pos: int) -> bytes:
        """Read once, as much as the frame at ``pos`` still needs (at least a full read);
        return the bytes from ``pos`` on and what was read."""
        rest = buf[pos:]
        need = _needed(rest, self._limit) if rest else -1
        data = self._recv(
            READ_SIZE if need < 0 else max(READ_SIZE, min(need - len(rest), _MAX_READ))
        )
        if not data:
            raise ConnectionEnded("the server closed the connection without a close frame")
        return rest + data if rest else data

    @property
    def buffered(self) -> bool:
        """Whether bytes not yet cut into frames are waiting in the buffer."""
        return self._pos < len(self._buf)

    def _fill(self, buf: bytes, pos: int) -> bytes:
        """Read until the frame at ``pos`` is complete, or its header is there and refuses it;
        return the bytes from ``pos`` on and what was read."""
        rest = buf[pos:]
        if not rest:
            # The common case: everything was parsed; one read usually brings whole frames.
            rest = self._recv(READ_SIZE)
            if not rest:
                raise ConnectionEnded("the server closed the connection without a close frame")
            need = _needed(rest, self._limit)
            if 0 <= need <= len(rest):
                return rest
        chunks = [rest]
        have = len(rest)
        need = _needed(rest, self._limit)
        while not 0 <= need <= have:
            wanted = READ_SIZE if need < 0 else max(READ_SIZE, min(need - have, _MAX_READ))
            data = self._recv(wanted)
            if not data:
                raise ConnectionEnded("the server closed the connection without a close frame")
            chunks.append(data)
            have += len(data)
            if need < 0:
                # Still no whole header: join the few bytes there are to read it.
                chunks = [b"".join(chunks)]
                need = _needed(chunks[0], self._limit)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(buf: bytes, pos: int, limit: int) -> tuple[int, int, bytes] | None:
    """Parse the header at ``pos``: (payload start, payload length, mask key or b"").

    :returns: ``None`` while the header is incomplete.
    :raises FrameTooLarge: if the announced length is above ``limit``.
    """
    size = len(buf)
    if size - pos < 2:
        return None
    b2 = buf[pos + 1]
    length = b2 & 0x7F
    start = pos + 2
    if length == 126:
        start = pos + 4
    elif length == 127:
        start = pos + 10
    if size < start:
        return None
    if length >= 126:
        length = int.from_bytes(buf[pos + 2 : start], "big")
    if length > limit:
        raise FrameTooLarge(length, limit)
    mask = b""
    if b2 & 0x80:
        if size < start + 4:
            return None
        mask = buf[start : start + 4]
        start += 4
    return start, length, mask


def _needed(rest: bytes, limit: int) -> int:
    """The bytes the frame at the start of ``rest`` needs in all.

    :returns: -1 while its header is incomplete; the bytes already there when the header
        announces more than ``limit`` (the frame is refused, not read).
    """
    try:
        head = _header(rest, 0, limit)
    except FrameTooLarge:
        return len(rest)
    if head is None:
        return -1
    start, length, _ = head
    return start + length
