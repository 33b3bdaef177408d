"""What the cmcsync-sql tests share: the simulator feed, and PostgreSQL servers to start.

PostgreSQL runs from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``) on
127.0.0.1 with a free port and a temporary directory; as root it runs as the ``postgres``
user, since the server refuses to run as root.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


def postgres_bin() -> Path | None:
    """Where ``pg_ctl`` and ``initdb`` are: on the PATH, or Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in Path(path).parts[-3].split(".") if n.isdigit())


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 with its own cluster directory.

    :param bindir: where ``pg_ctl`` is.
    :param datadir: the cluster (a copy of the session's ``initdb``).
    :param run_as: the command prefix that runs a program as the cluster's owner.
    """

    def __init__(self, bindir: Path, datadir: Path, run_as: Sequence[str]) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.run_as = list(run_as)
        self.port = free_port()

    @property
    def url(self) -> str:
        """The ``postgres`` database as the superuser ``cmcsync`` (trust authentication)."""
        return f"postgresql://cmcsync@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.datadir.parent} -F "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=20"
        )
        log = str(self.datadir.parent / "log")
        self._pg_ctl("start", "-w", "-t", "30", "-o", options, "-l", log)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._pg_ctl("stop", "-w", "-t", "30", "-m", mode)

    def _pg_ctl(self, *args: str) -> None:
        command = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.datadir.parent / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stderr.strip()}\n{tail}")
