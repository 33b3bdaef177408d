"""cmcsync logs through the standard logging module, under loggers named cmcsync.*."""

from __future__ import annotations

import logging
import sys
import threading

import cmcsync
from cmcsync.testing import Simulator

logging.basicConfig(
    stream=sys.stdout, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
)
logging.getLogger("cmcsync").setLevel(logging.INFO)  # connections and replays too
logging.getLogger("cmcsync.testing").setLevel(logging.WARNING)  # but not the simulator's


class Errors:
    def __init__(self) -> None:
        self.seen = threading.Event()

    @cmcsync.hookimpl
    def cmcsync_on_error(self, error: cmcsync.CmcsyncError) -> None:
        self.seen.set()


errors = Errors()
with Simulator(api_keys=["demo-key"], speed=50) as server:
    with cmcsync.Client(api_key="demo-key", url=server.url, plugins=[errors]) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1])
        server.push("this is not JSON")  # skipped, logged once per kind, counted
        errors.seen.wait(timeout=10)
        print("malformed frames:", client.stats()["malformed_by_kind"])
