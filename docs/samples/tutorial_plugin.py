"""A plugin: it says what it needs and receives typed events on the dispatcher thread."""

from __future__ import annotations

import threading
from typing import Any

import cmcsync
from cmcsync.events import CryptoLatestPrice
from cmcsync.testing import Simulator


class PriceBoard:
    """Keep the latest price of a few coins."""

    def __init__(self, crypto_ids: list[int]) -> None:
        self.crypto_ids = crypto_ids
        self.latest: dict[int, float] = {}
        self.complete = threading.Event()

    @cmcsync.hookimpl
    def cmcsync_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        return [("market@crypto_latest_price", {"crypto_ids": self.crypto_ids})]

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        self.latest[event.crypto_id] = float(event.price)
        if len(self.latest) == len(self.crypto_ids):
            self.complete.set()


board = PriceBoard([1, 1027, 5426])
with Simulator(api_keys=["demo-key"], speed=50) as server:
    with cmcsync.Client(api_key="demo-key", url=server.url, plugins=[board]):
        board.complete.wait(timeout=10)  # the client subscribed for the plugin
print("prices for", sorted(board.latest))
