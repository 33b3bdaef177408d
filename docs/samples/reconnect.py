"""What a plugin sees when the connection drops: disconnect, reconnect, replay and the gap."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import cmcsync
from cmcsync.testing import Simulator


class Lifecycle:
    def __init__(self) -> None:
        self.gap = threading.Event()

    @cmcsync.hookimpl
    def cmcsync_on_connect(self, reconnect: bool) -> None:
        print(f"connected (reconnect={reconnect})")

    @cmcsync.hookimpl
    def cmcsync_on_disconnect(self, code: int | None, will_reconnect: bool) -> None:
        print(f"disconnected (code={code}, will_reconnect={will_reconnect})")

    @cmcsync.hookimpl
    def cmcsync_on_subscription_state(self, params: Mapping[str, Any], state: str) -> None:
        print(f"subscription {params} is {state}")

    @cmcsync.hookimpl
    def cmcsync_on_gap(self, params: Mapping[str, Any], start_ms: int, end_ms: int) -> None:
        print(f"data for {params} may be missing for {end_ms - start_ms} ms")
        self.gap.set()


lifecycle = Lifecycle()
with Simulator(api_keys=["demo-key"], speed=50) as server:
    with cmcsync.Client(
        api_key="demo-key",
        url=server.url,
        plugins=[lifecycle],
        backoff=cmcsync.Backoff(base=0.2, cap=5.0),
    ) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1])
        server.drop_all()  # the network fails: no close frame, nothing
        lifecycle.gap.wait(timeout=10)
        print("reconnects:", client.stats()["reconnects"])
