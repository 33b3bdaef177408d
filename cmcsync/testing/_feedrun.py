"""Streaming the simulator's full feed through plugins, for plugin tests.

:data:`FEED` subscribes to all ten channels (with a pool whose swaps arrive on two
subscriptions, so dedupe is exercised); :func:`stream_feed` runs it through plugins until every
channel has delivered, and returns an :class:`EventRecorder` holding what the client delivered:
the reference a storage or forwarding plugin's output is compared with.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import cmcsync
from cmcsync.testing._recorder import EventRecorder
from cmcsync.testing._simulator import Simulator

__all__ = ["FEED", "FEED_CHANNELS", "free_port", "stream_feed", "wait_until"]

_KEY = "test-key"
_CAKE = "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"
_WBNB = "0xbb4cdb9cbd36b01bd1cbaef60af814a3f6f0ee1c"
_USDC = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"

#: Subscriptions covering all ten channels; CAKE and WBNB share a pool, so its swaps and
#: liquidity events come on both subscriptions and the client drops the second copy.
FEED: Sequence[tuple[str, dict[str, Any]]] = (
    ("market@crypto_latest_price", {"crypto_ids": [1, 1027, 1839, 5426, 52]}),
    ("onchain@transaction", {"platform_id": 14, "address": [_CAKE, _WBNB]}),
    ("onchain@liquidity_event", {"platform_id": 14, "address": [_CAKE, _WBNB]}),
    ("onchain@token_agg_event", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@kline", {"platform_id": 14, "address": [_CAKE, _USDC], "interval": "1s"}),
    ("onchain@unique_trader", {"platform_id": 14, "address": [_CAKE], "interval": "5s"}),
    ("onchain@token_metric", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@pool_metric", {"platform_id": 14, "pool_address": ["0x" + "ab" * 20]}),
    ("onchain@holders_metrics", {"platform_id": 14, "address": [_CAKE]}),
    ("onchain@holder_wallet_update", {"platform_id": 14, "wallet_address": ["0x" + "cd" * 20]}),
)
#: The channels of :data:`FEED`, in its order.
FEED_CHANNELS = tuple(channel for channel, _ in FEED)


def stream_feed(
    sim: Simulator,
    *plugins: object,
    decimal: bool = False,
    per_channel: int = 8,
    timeout: float = 20.0,
    during: Callable[[cmcsync.Client, EventRecorder], None] | None = None,
) -> EventRecorder:
    """Stream :data:`FEED` from ``sim`` (key ``"test-key"``) through ``plugins``.

    Runs until every channel delivered ``per_channel`` events, then closes the client.

    :returns: the recorder, holding what the client delivered.

    :param during: called once the stream flows, before the client closes (to stop a server,
        say); the stream goes on meanwhile.
    """
    recorder = EventRecorder()
    client = cmcsync.Client(
        api_key=_KEY,
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
            counts = dict.fromkeys(FEED_CHANNELS, 0)
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
    """A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
