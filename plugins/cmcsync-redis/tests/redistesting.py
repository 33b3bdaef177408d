"""What the cmcsync-redis tests share: the simulator feed, and Redis servers to start.

``redis-server`` (Debian's ``redis-server`` package) runs on 127.0.0.1 with a free port, no
automatic snapshots and no append-only file, in a temporary directory of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import cmcsync
from cmcsync.testing import EventRecorder, Simulator

KEY = "test-key"
CAKE = "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"
WBNB = "0xbb4cdb9cbd36b01bd1cbaef60af814a3f6f0ee1c"
USDC = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"

#: Subscriptions covering all ten channels; CAKE and WBNB share a pool, so its swaps and
#: liquidity events come on both subscriptions and the client drops the second copy.
FEED: Sequence[tuple[str, dict[str, Any]]] = (
    ("market@crypto_latest_price", {"crypto_ids": [1, 1027, 1839, 5426, 52]}),
    ("onchain@transaction", {"platform_id": 14, "address": [CAKE, WBNB]}),
    ("onchain@liquidity_event", {"platform_id": 14, "address": [CAKE, WBNB]}),
    ("onchain@token_agg_event", {"platform_id": 14, "address": [CAKE]}),
    ("onchain@kline", {"platform_id": 14, "address": [CAKE, USDC], "interval": "1s"}),
    ("onchain@unique_trader", {"platform_id": 14, "address": [CAKE], "interval": "5s"}),
    ("onchain@token_metric", {"platform_id": 14, "address": [CAKE]}),
    ("onchain@pool_metric", {"platform_id": 14, "pool_address": ["0x" + "ab" * 20]}),
    ("onchain@holders_metrics", {"platform_id": 14, "address": [CAKE]}),
    ("onchain@holder_wallet_update", {"platform_id": 14, "wallet_address": ["0x" + "cd" * 20]}),
)
CHANNELS = tuple(channel for channel, _ in FEED)


def stream(
    sim: Simulator,
    *plugins: object,
    decimal: bool = False,
    per_channel: int = 8,
    timeout: float = 20.0,
    during: Callable[[cmcsync.Client, EventRecorder], None] | None = None,
) -> EventRecorder:
    """Stream :data:`FEED` through ``plugins`` until every channel delivered ``per_channel``
    events, then close the client; return the recorder: what the client delivered.

    :param during: called once the stream flows, before the client closes (to stop a server,
        say); the stream goes on meanwhile.
    """
    recorder = EventRecorder()
    client = cmcsync.Client(
        api_key=KEY,
        url=sim.url,
        autoload=False,
        plugins=[recorder, *plugins],
        decimal=decimal,
        timeouts=cmcsync.Timeouts(ack=5.0, close=5.0),
    )
    try:
        client.start()
        for channel, params in FEED:
            client.subscribe(channel, **params)

        def every_channel() -> bool:
            counts = dict.fromkeys(CHANNELS, 0)
            for event in recorder.events:
                counts[event.channel] += 1
            return min(counts.values()) >= per_channel

        recorder.wait_for(every_channel, timeout=timeout)
        if during is not None:
            during(client, recorder)
    finally:
        client.close()
    return recorder


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait for a background thread to make ``predicate()`` true, checking every 10 ms.

    :raises TimeoutError: if it is still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {predicate}")
        tick.wait(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str | None:
    """The ``redis-server`` program, if installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 that a test can stop and start again.

    Its data lives in ``directory``: :meth:`stop` with ``save=True`` writes it there and the
    next :meth:`start` loads it, as a server restarted by its operator would.

    :param binary: the ``redis-server`` program.
    :param directory: where the server keeps its files.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of the test's own, for looking at what the plugin wrote."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def start(self) -> None:
        """Start the server; returns once it answers PING."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--logfile", str(self.directory / "log"), "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        probe = self.client()
        try:
            wait_until(lambda: _answers(probe), timeout=10.0)
        finally:
            probe.close()

    def stop(self, *, save: bool = False) -> None:
        """Shut the server down, saving its data first if ``save``; returns once it exited."""
        process, self._process = self._process, None
        if process is None:
            return
        probe = self.client()
        try:
            probe.shutdown(save=save, nosave=not save)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        finally:
            probe.close()
        process.wait(timeout=10)

    def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


def _answers(probe: redis.Redis) -> bool:
    try:
        return bool(probe.ping())
    except redis.ConnectionError:
        return False
