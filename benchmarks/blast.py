"""The blast server: a minimal CMC streaming server on 127.0.0.1 that pushes as fast as asked.

It speaks enough of the CMC protocol for every peer of the benchmark: the WebSocket upgrade
(the key header is required, any value is accepted), a ``welcome``, acks, errors and pongs
(answered by the simulator's own request logic, :func:`cmcsync.testing._simprotocol.respond`)
and RFC 6455 pings. Once a connection holds every subscription of the scenario (see
:func:`plan`), it pushes data frames taken from the simulator's feeds, cycled, either as fast
as the socket takes them or at a fixed rate, then stops by itself.

Each connection chooses its scenario in the query string of the URL:

- ``count``: data frames to push (0: push nothing, only answer requests);
- ``rate``: frames per second; 0 pushes as fast as possible;
- ``hold``: seconds the connection may stay open in all (a hard bound; default 120).

Every data frame carries its send time in the envelope ``ts``, in epoch **microseconds**
(16 digits), so a client measures latency as ``now - ts`` with no extra key. Swap and
liquidity frames get a transaction hash made unique per push, so no client drops any of
them as duplicates however long the cycle runs.

The server is plain sockets and threads (one reader and one writer per connection) and
sends pre-encoded frames in large writes, so it is never the bottleneck of the clients it
serves. Run it alone with ``python benchmarks/blast.py``; it prints its port and serves until
it is interrupted or ``--lifetime`` seconds pass.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from cmcsync.channels import CHANNELS
from cmcsync.testing._feeds import Feeds
from cmcsync.testing._simprotocol import (
    SubKey,
    params_echo,
    respond,
    split_params,
    sub_key,
    welcome_frame,
)

__all__ = ["PLAN", "Templates", "plan", "serve"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY_HEADER = "x-cmc_pro_api_key"
_SUB_LIMIT = 100
_PING_INTERVAL_MS = 10_000
_TS_DIGITS = 16  # epoch microseconds: 16 digits until the year 2286
_TX_DIGITS = 8  # the hex digits of a transaction hash replaced by a per-push counter
_CYCLE = 4000  # distinct frames; cycled
_CHUNK = 128  # frames per write at full speed

_CAKE = "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"  # on BNB Chain (14)
_WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"  # on Ethereum (1)
_USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
_WALLET = "0x" + "5a" * 20

#: The scenario's subscriptions, as every peer sends them: (channel, params), one request each.
PLAN: Sequence[tuple[str, dict[str, Any]]] = (
    ("market@crypto_latest_price", {"crypto_ids": [1, 1027, 1839, 5426, 52, 74]}),
    ("onchain@token_agg_event", {"platform_id": 1, "address": [_WETH, _USDC]}),
    ("onchain@transaction", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@liquidity_event", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@holders_metrics", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@holder_wallet_update", {"platform_id": 14, "wallet_address": [_WALLET]}),
    ("onchain@token_metric", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@pool_metric", {"platform_id": 14, "pool_address": []}),  # filled by plan()
)

#: Share of each channel in the pushed mix (prices and aggregated prices dominate, as live).
_WEIGHTS = {
    "market@crypto_latest_price": 27,
    "onchain@token_agg_event": 38,
    "onchain@holders_metrics": 12,
    "onchain@holder_wallet_update": 13,
    "onchain@transaction": 5,
    "onchain@liquidity_event": 2,
    "onchain@pool_metric": 2,
    "onchain@token_metric": 1,
}


def plan(feeds: Feeds | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The subscribe requests of the scenario: (channel, params with the list param as a list)."""
    world = feeds or Feeds(seed="bench")
    pool = world.pools(14, _CAKE)[0][0]
    return [
        (
            channel,
            {**params, "pool_address": [pool]} if channel == "onchain@pool_metric" else params,
        )
        for channel, params in PLAN
    ]


def wanted_keys(requests: Sequence[tuple[str, dict[str, Any]]]) -> set[SubKey]:
    """The subscription identities a plan's requests make."""
    keys: set[SubKey] = set()
    for channel, params in requests:
        for one in split_params(CHANNELS[channel], params):
            keys.add(sub_key(channel, one))
    return keys


def _ws_header(length: int, opcode: int = 0x1) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def encode(message: dict[str, Any], opcode: int = 0x1) -> bytes:
    """One unmasked server frame carrying ``message`` as compact JSON."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    return _ws_header(len(payload), opcode) + payload


class Templates:
    """The cycle of data frames, pre-encoded around the two parts that change per push.

    Each template is ``(header, before_counter, between, )``: the frame is
    ``header + before + counter + between + ts + b"}"`` where ``counter`` (8 hex digits,
    swaps and liquidity only, empty otherwise) makes the transaction hash unique and ``ts``
    is the 16-digit send time in microseconds. Lengths are fixed, so headers are too.
    """

    def __init__(self, seed: str = "bench", cycle: int = _CYCLE) -> None:
        feeds = Feeds(seed=seed, speed=1000.0, null_rate=0.03)
        self.requests = plan(feeds)
        self.keys = wanted_keys(self.requests)
        pools = self._pools(feeds)
        rng = random.Random(seed)
        names = list(_WEIGHTS)
        weights = [_WEIGHTS[name] for name in names]
        self.frames: list[tuple[bytes, bytes, bytes]] = []
        self.sizes: list[int] = []
        used: dict[str, int] = dict.fromkeys(names, 0)
        for _ in range(cycle):
            channel = rng.choices(names, weights)[0]
            bucket = pools[channel]
            data = bucket[used[channel] % len(bucket)]
            used[channel] += 1
            self._add(*data)

    def _pools(self, feeds: Feeds) -> dict[str, list[tuple[SubKey, dict[str, Any]]]]:
        """At least 50 distinct payloads per channel, from the simulator's feeds."""
        pools: dict[str, list[tuple[SubKey, dict[str, Any]]]] = {name: [] for name in _WEIGHTS}
        sources = {src for key in self.keys for src in feeds.sources(key[0], dict(key[1]))}
        for _ in range(400):
            for source in sorted(sources, key=repr):
                for key, data in feeds.tick(source):
                    if key in self.keys and len(pools[key[0]]) < 200:
                        pools[key[0]].append((key, data))
            if all(len(found) >= 50 for found in pools.values()):
                break
        empty = [name for name, found in pools.items() if not found]
        if empty:
            raise RuntimeError(f"the feeds produced nothing for {empty}")
        return pools

    def _add(self, key: SubKey, data: dict[str, Any]) -> None:
        data = dict(data)
        marker = None
        if isinstance(data.get("tx"), str) and data["tx"].startswith("0x"):
            marker = "X" * _TX_DIGITS
            data["tx"] = data["tx"][:-_TX_DIGITS] + marker
        frame = {"type": "data", "channel": key[0], "params": params_echo(key), "data": data}
        text = json.dumps(frame, separators=(",", ":"))
        assert text.endswith("}")
        text = text[:-1] + ',"ts":'
        if marker is not None:
            before, between = text.split(marker)
        else:
            before, between = text, ""
        size = len(before.encode()) + len(between.encode()) + _TS_DIGITS + 1
        size += _TX_DIGITS if marker is not None else 0
        head = _ws_header(size)
        if marker is None:
            # No counter: the whole prefix goes before the stamp.
            self.frames.append((head + before.encode(), b"", b""))
        else:
            self.frames.append((head + before.encode(), between.encode(), b"x"))
        self.sizes.append(size)

    @property
    def mean_size(self) -> float:
        """The mean payload size of the cycle, in bytes."""
        return sum(self.sizes) / len(self.sizes)

    def build(self, start: int, n: int, stamp: int | None) -> bytes:
        """Frames ``start`` .. ``start + n - 1`` of the endless cycle, stamped ``stamp`` (now
        when ``None``: one stamp for all, taken after building, just before the write)."""
        frames = self.frames
        cycle = len(frames)
        if stamp is None:
            stamp = time.time_ns() // 1000
        ts = b"%016d}" % stamp
        parts: list[bytes] = []
        for i in range(start, start + n):
            head, between, counted = frames[i % cycle]
            if counted:
                parts += (head, b"%08x" % (i & 0xFFFFFFFF), between, ts)
            else:
                parts += (head, ts)
        return b"".join(parts)


# --- one connection ---------------------------------------------------------------------


class _Peer:
    """One client connection: a reader thread answering requests, the caller blasting."""

    def __init__(self, sock: socket.socket, templates: Templates, query: dict[str, str]) -> None:
        self.sock = sock
        self.templates = templates
        self.count = int(query.get("count", "0"))
        self.rate = float(query.get("rate", "0"))
        self.deadline = time.monotonic() + float(query.get("hold", "120"))
        self.subs: set[SubKey] = set()
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.closed = threading.Event()

    def send(self, data: bytes) -> bool:
        with self.lock:
            if self.closed.is_set():
                return False
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed.set()
                return False
        return True

    def run(self) -> None:
        reader = threading.Thread(target=self._read, name="blast-reader", daemon=True)
        reader.start()
        try:
            self.send(encode(welcome_frame(_PING_INTERVAL_MS)))
            if self.count:
                self._wait_ready()
                if self.ready.is_set():
                    self._blast()
            # Done pushing: wait for the client to close, within the connection's bound.
            self.closed.wait(max(0.0, self.deadline - time.monotonic()))
        finally:
            if not self.closed.is_set():
                self.send(_ws_header(2, 0x8) + struct.pack("!H", 1000))
            self.closed.set()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            reader.join(5.0)
            self.sock.close()

    def _wait_ready(self) -> None:
        while not self.ready.wait(0.05):
            if self.closed.is_set() or time.monotonic() > self.deadline:
                return

    def _blast(self) -> None:
        templates = self.templates
        if self.rate <= 0:
            sent = 0
            while sent < self.count and not self.closed.is_set():
                n = min(_CHUNK, self.count - sent)
                if not self.send(templates.build(sent, n, None)):
                    return
                sent += n
                if time.monotonic() > self.deadline:
                    return
            return
        period = 1.0 / self.rate
        start = time.monotonic()
        sent = 0
        while sent < self.count and not self.closed.is_set():
            now = time.monotonic()
            due = int((now - start) / period) + 1
            n = min(due, self.count) - sent
            if n > 0:
                # Each frame stamped as it leaves: when late, several leave together.
                stamp = time.time_ns() // 1000
                if not self.send(templates.build(sent, n, stamp)):
                    return
                sent += n
            if now > self.deadline:
                return
            wait = start + (sent + 1) * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _read(self) -> None:
        buf = b""
        parts: list[bytes] = []
        try:
            while not self.closed.is_set():
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    frame = _parse_client_frame(buf)
                    if frame is None:
                        break
                    fin, opcode, payload, used = frame
                    buf = buf[used:]
                    if opcode == 0x8:
                        self.send(_ws_header(len(payload[:2]), 0x8) + payload[:2])
                        self.closed.set()
                        return
                    if opcode == 0x9:
                        self.send(_ws_header(len(payload), 0xA) + payload)
                        continue
                    if opcode == 0xA:
                        continue
                    parts.append(payload)
                    if fin:
                        self._answer(b"".join(parts))
                        parts = []
        except OSError:
            pass
        finally:
            self.closed.set()

    def _answer(self, payload: bytes) -> None:
        try:
            text: str | bytes = payload.decode()
        except UnicodeDecodeError:
            text = payload
        outcome = respond(text, self.subs, sub_limit=_SUB_LIMIT, max_bytes=65536)
        for key in outcome.removed:
            self.subs.discard(key)
        self.subs.update(outcome.added)
        self.send(encode(outcome.reply))
        if self.templates.keys <= self.subs:
            self.ready.set()


def _parse_client_frame(buf: bytes) -> tuple[bool, int, bytes, int] | None:
    if len(buf) < 2:
        return None
    b1, b2 = buf[0], buf[1]
    length = b2 & 0x7F
    pos = 2
    if length == 126:
        if len(buf) < 4:
            return None
        length = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    mask = b""
    if b2 & 0x80:
        if len(buf) < pos + 4:
            return None
        mask = buf[pos : pos + 4]
        pos += 4
    if len(buf) < pos + length:
        return None
    payload = buf[pos : pos + length]
    if mask:
        key = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
            length, "big"
        )
    return bool(b1 & 0x80), b1 & 0x0F, payload, pos + length


def _handshake(sock: socket.socket) -> dict[str, str] | None:
    """Read the upgrade request and accept it; return the query, or ``None`` if refused."""
    sock.settimeout(10.0)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    target = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    ws_key = headers.get("sec-websocket-key")
    if not ws_key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return None
    if not headers.get(_KEY_HEADER):
        sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        return None
    accept = base64.b64encode(hashlib.sha1(ws_key.encode() + _GUID).digest()).decode()  # noqa: S324
    sock.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    sock.settimeout(None)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    return {name: values[-1] for name, values in query.items()}


def _serve_one(sock: socket.socket, templates: Templates) -> None:
    try:
        query = _handshake(sock)
    except OSError:
        query = None
    if query is None:
        sock.close()
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _Peer(sock, templates, query).run()


def serve(listener: socket.socket, templates: Templates, stop: threading.Event) -> None:
    """Accept connections until ``stop`` is set; each gets its own threads."""
    listener.settimeout(0.2)
    workers: list[threading.Thread] = []
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            workers = [w for w in workers if w.is_alive()]
            continue
        except OSError:
            break
        worker = threading.Thread(target=_serve_one, args=(sock, templates), daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join(1.0)


def _frames_of(templates: Templates, n: int) -> Iterator[bytes]:
    """The first ``n`` frames' payloads (for checks): what a client receives."""
    data = templates.build(0, n, 1_700_000_000_000_000)
    pos = 0
    for _ in range(n):
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length = struct.unpack_from("!H", data, pos + 2)[0]
            start = pos + 4
        yield data[start : start + length]
        pos = start + length


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before exiting")
    args = parser.parse_args(argv)
    templates = Templates()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=64)
    port = listener.getsockname()[1]
    print(  # noqa: T201 - the harness reads the port from this line
        json.dumps({"port": port, "mean_frame_bytes": round(templates.mean_size, 1)}), flush=True
    )
    stop = threading.Event()
    timer = threading.Timer(args.lifetime, stop.set)
    timer.daemon = True
    timer.start()
    try:
        # Exit when the parent closes stdin (the harness ending), or at the lifetime.
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        serve(listener, templates, stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
