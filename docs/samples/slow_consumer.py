"""A plugin slower than the stream: with overflow="conflate" it gets the latest prices first."""

from __future__ import annotations

import threading
import time
from typing import Any

import cmcsync
from cmcsync.events import CryptoLatestPrice
from cmcsync.testing import Simulator


class SlowWriter:
    def __init__(self) -> None:
        self.written = 0
        self.done = threading.Event()

    @cmcsync.hookimpl
    def cmcsync_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        return [("market@crypto_latest_price", {"crypto_ids": list(range(1, 41))})]

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        time.sleep(0.005)  # stands for a slow write to a database
        self.written += 1
        if self.written == 100:
            self.done.set()


writer = SlowWriter()
with Simulator(api_keys=["demo-key"], speed=500) as server:
    with cmcsync.Client(
        api_key="demo-key",
        url=server.url,
        plugins=[writer],
        # Room for one queued event per subscription: a newer price replaces a queued one.
        dispatch=cmcsync.DispatchConfig(queue_size=100, overflow="conflate"),
    ) as client:
        writer.done.wait(timeout=20)
        stats = client.stats()
dispatch = stats["dispatch"]
print(f"received {stats['events']} prices, handed {dispatch['delivered']} to the plugin")
print(f"replaced by a newer one while queued: {dispatch['conflated']}")
print(f"times the reader had to wait for room: {dispatch['blocked_submits']}")
