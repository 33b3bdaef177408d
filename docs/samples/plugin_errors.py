"""A plugin that raises: the others still get every event; it is reported, then switched off."""

from __future__ import annotations

import threading

import cmcsync
from cmcsync.events import Event
from cmcsync.testing import Simulator


class Broken:
    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Event) -> None:
        raise RuntimeError("a bug in this plugin")


class Counter:
    def __init__(self) -> None:
        self.events = 0
        self.enough = threading.Event()

    @cmcsync.hookimpl
    def cmcsync_on_event(self, event: Event) -> None:
        self.events += 1
        if self.events == 10:
            self.enough.set()

    @cmcsync.hookimpl
    def cmcsync_on_plugin_error(
        self, plugin_name: str, hook_name: str, error: BaseException, disabled: bool
    ) -> None:
        print(f"{plugin_name} raised {error!r} in {hook_name}; switched off: {disabled}")


counter = Counter()
with Simulator(api_keys=["demo-key"], speed=50) as server:
    with cmcsync.Client(
        api_key="demo-key",
        url=server.url,
        plugins=[Broken(), counter],
        dispatch=cmcsync.DispatchConfig(max_plugin_failures=3),
    ) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        counter.enough.wait(timeout=10)
        print("plugin errors:", client.stats()["dispatch"]["plugin_errors"])
print("the counter still got", counter.events, "events")
