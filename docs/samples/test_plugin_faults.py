"""Testing a plugin against the simulator's faults, with the fixtures cmcsync installs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

import cmcsync
from cmcsync.events import CryptoLatestPrice
from cmcsync.testing import EventRecorder, Simulator


class LastPrice:
    """Keeps the latest price per coin and forgets it when quotes may have been missed."""

    def __init__(self) -> None:
        self.latest: dict[int, float] = {}

    @cmcsync.hookimpl
    def cmcsync_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        return [("market@crypto_latest_price", {"crypto_ids": [1]})]

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        self.latest[event.crypto_id] = float(event.price)

    @cmcsync.hookimpl
    def cmcsync_on_gap(self, params: Mapping[str, Any]) -> None:
        self.latest.pop(params["crypto_ids"], None)


def test_a_dropped_connection_is_reported_as_a_gap(
    cmcsync_simulator: Simulator,
    cmcsync_make_client: Callable[..., cmcsync.Client],
    cmcsync_recorder: EventRecorder,
) -> None:
    plugin = LastPrice()
    cmcsync_make_client(plugin)
    cmcsync_recorder.wait_for_events(1, timeout=10)

    cmcsync_simulator.drop_all()

    gaps = cmcsync_recorder.wait_for(lambda: cmcsync_recorder.hook_calls("cmcsync_on_gap"), 10)
    assert gaps[0]["params"] == {"crypto_ids": 1}
    assert gaps[0]["start_ms"] <= gaps[0]["end_ms"]


def test_a_refused_subscription_raises_with_the_server_fields(
    cmcsync_simulator: Simulator, cmcsync_client: cmcsync.Client
) -> None:
    cmcsync_simulator.fail_next_subscribe(2302)
    with pytest.raises(cmcsync.SubscriptionError) as refused:
        cmcsync_client.subscribe("market@crypto_latest_price", crypto_ids=[1027])
    assert refused.value.error_code == 2302
    assert cmcsync_client.subscriptions() == {}
