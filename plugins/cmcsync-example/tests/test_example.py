"""Tests of the price-alert plugin: its logic on hand-made quotes, then against the simulator."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cmcsync.events import CryptoLatestPrice
from cmcsync.plugins import make_plugin_manager, plugin_info

try:
    import cmcsync_example
except ImportError:  # running from a source tree without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import cmcsync_example

from cmcsync_example import CHANNEL, IDS_ENV, THRESHOLDS_ENV, PriceAlerts

if TYPE_CHECKING:
    import cmcsync
    from cmcsync.testing import EventRecorder

pytestmark = pytest.mark.usefixtures("cmcsync_no_leaked_threads")


def quote(crypto_id: int, price: float, ts: int = 1_700_000_000_000) -> CryptoLatestPrice:
    return CryptoLatestPrice(
        channel=CHANNEL, params={"crypto_ids": crypto_id}, ts=ts, crypto_id=crypto_id, price=price
    )


def test_ids_and_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IDS_ENV, "5426, 1")
    monkeypatch.setenv(THRESHOLDS_ENV, "1=100000,1=90000,5426=150")
    alerts = PriceAlerts()
    assert alerts.cmcsync_subscriptions() == [(CHANNEL, {"crypto_ids": [5426, 1]})]
    assert alerts.thresholds == {1: (90000.0, 100000.0), 5426: (150.0,)}


def test_default_ids_are_bitcoin_and_ethereum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IDS_ENV, raising=False)
    monkeypatch.delenv(THRESHOLDS_ENV, raising=False)
    alerts = PriceAlerts()
    assert alerts.ids == (1, 1027)
    assert alerts.thresholds == {}


@pytest.mark.parametrize(("variable", "value"), [(IDS_ENV, "bitcoin"), (THRESHOLDS_ENV, "1:500")])
def test_an_unreadable_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        PriceAlerts()


def test_crossings_up_and_down_are_recorded_per_id() -> None:
    alerts = PriceAlerts(ids=[1, 1027], thresholds={1: [100.0], 1027: [10.0]})
    for event in (
        quote(1, 99.0),
        quote(1, 101.0),
        quote(1, 100.5),
        quote(1, 95.0),
        quote(1027, 9.0),
    ):
        alerts.cmcsync_on_crypto_latest_price(event)
    assert [(c.crypto_id, c.direction, c.previous, c.price) for c in alerts.crossings] == [
        (1, "up", 99.0, 101.0),
        (1, "down", 100.5, 95.0),
    ]
    assert alerts.latest == {1: 95.0, 1027: 9.0}


def test_quotes_of_ids_it_does_not_watch_are_ignored() -> None:
    alerts = PriceAlerts(ids=[1], thresholds={})
    alerts.cmcsync_on_crypto_latest_price(quote(825, 1.0))
    assert alerts.latest == {}


def test_a_gap_restarts_from_the_next_quote() -> None:
    alerts = PriceAlerts(ids=[1], thresholds={1: [100.0]})
    alerts.cmcsync_on_crypto_latest_price(quote(1, 90.0))
    alerts.cmcsync_on_gap(CHANNEL, {"crypto_ids": 1})
    alerts.cmcsync_on_crypto_latest_price(quote(1, 110.0))
    assert alerts.crossings == []  # 90 is stale: the move may have happened in the gap
    assert alerts.latest == {1: 110.0}


def test_the_module_is_a_valid_plugin() -> None:
    pm = make_plugin_manager(autoload=False, plugins=[cmcsync_example])
    [info] = plugin_info(pm)
    assert info.name == "cmcsync_example"
    assert info.hooks == (
        "cmcsync_on_crypto_latest_price",
        "cmcsync_on_gap",
        "cmcsync_subscriptions",
    )


def test_prices_arrive_from_the_simulator_with_no_subscribe_call(
    cmcsync_make_client: Callable[..., cmcsync.Client], cmcsync_recorder: EventRecorder
) -> None:
    alerts = PriceAlerts(ids=[1, 1027], thresholds={})
    cmcsync_make_client(alerts)  # subscribes to what the plugin declares
    cmcsync_recorder.wait_for(lambda: set(alerts.latest) == {1, 1027}, timeout=15.0)
    seen = {
        event.crypto_id
        for event in cmcsync_recorder.by_channel(CHANNEL)
        if isinstance(event, CryptoLatestPrice)
    }
    assert seen == {1, 1027}
