"""The Django integration, in the example project's settings: start-once, signals, health,
``cmcsync_run``, system checks, and the example's views through Django's test client."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402 - only once Django is known to be installed

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "django_prices"
if not settings.configured:
    sys.path.insert(0, str(EXAMPLE))
    from pricesite import settings as example_settings

    values = {
        name: getattr(example_settings, name) for name in dir(example_settings) if name.isupper()
    }
    values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    values["CACHES"] = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.configure(**values)
    django.setup()

from django.apps import apps  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.checks import run_checks  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.dispatch import Signal  # noqa: E402
from django.test import Client as WebClient  # noqa: E402
from django.test import override_settings  # noqa: E402

import cmcsync  # noqa: E402
import cmcsync.contrib.django as cmc  # noqa: E402
from cmcsync.contrib import Role  # noqa: E402
from cmcsync.contrib._launch import Action, Launch  # noqa: E402
from cmcsync.contrib._leader import LeaderLock  # noqa: E402
from cmcsync.contrib.django import signals  # noqa: E402
from cmcsync.events import CryptoLatestPrice, Kline  # noqa: E402
from cmcsync.testing import Simulator  # noqa: E402

KEY = "test-key"
PRICE = "market@crypto_latest_price"
FAST = {
    "timeouts": cmcsync.Timeouts(ack=5.0, pong=1.0, close=2.0),
    "backoff": cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1),
}


class Received:
    """Receivers connected for one test: records every signal, disconnected afterwards."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self._connected: list[tuple[Signal, Callable[..., None]]] = []

    def listen(self, signal: Signal, name: str, sender: Any = None) -> None:
        def receiver(sender: Any, **kwargs: Any) -> None:
            with self.cond:
                self.calls.append((name, sender, kwargs))
                self.cond.notify_all()

        signal.connect(receiver, sender=sender, weak=False)
        self._connected.append((signal, receiver))

    def of(self, name: str) -> list[tuple[Any, dict[str, Any]]]:
        with self.cond:
            return [(sender, kwargs) for n, sender, kwargs in self.calls if n == name]

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError(f"not received within {timeout} s: {self.calls[-5:]}")

    def disconnect(self) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver)


def app_config() -> Any:
    return apps.get_app_config("cmcsync")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), speed=200.0, seed=11) as server:
        yield server


@pytest.fixture
def received() -> Iterator[Received]:
    listener = Received()
    yield listener
    listener.disconnect()


@pytest.fixture
def configure(sim: Simulator) -> Iterator[Callable[..., None]]:
    """Point ``CMCSYNC`` at the simulator, with ``overrides``; stop the client afterwards."""
    active: list[Any] = []
    decision = app_config().decision

    def apply(**overrides: Any) -> None:
        value = {
            "API_KEY": KEY,
            "URL": sim.url,
            "SUBSCRIPTIONS": [{"channel": PRICE, "crypto_ids": [1, 1027]}],
            "AUTOLOAD": False,
            "OPTIONS": FAST,
            **overrides,
        }
        override = override_settings(CMCSYNC=value)
        override.enable()
        active.append(override)

    yield apply
    cmc.stop()
    app_config().decision = decision
    for override in reversed(active):
        override.disable()
    cache.clear()


# --- start-once ------------------------------------------------------------------------------


def test_the_app_does_not_start_under_pytest(sim: Simulator) -> None:
    config = app_config()
    assert config.decision.action is Action.SKIP
    assert "pytest" in config.decision.reason
    assert cmc.get_client() is None
    response = WebClient().get("/cmcsync/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["role"] == "idle" and "pytest" in body["reason"]
    assert sim.all_connections() == []


def test_ready_follows_the_start_once_rules(
    sim: Simulator, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    config = app_config()
    launches = {
        "migrate": Launch(argv=("manage.py", "migrate")),
        "master": Launch(argv=("gunicorn", "site.wsgi"), server="gunicorn"),
        "worker": Launch(argv=("gunicorn", "site.wsgi"), server="gunicorn", worker=True),
    }
    monkeypatch.setattr("cmcsync.contrib.django.apps.detect_launch", lambda: launches["migrate"])
    config.ready()
    assert cmc.get_client() is None

    # A gunicorn master defers to its workers; a request it serves after all starts it.
    monkeypatch.setattr("cmcsync.contrib.django.apps.detect_launch", lambda: launches["master"])
    config.ready()
    assert cmc.get_runtime().role is Role.WAITING
    assert sim.all_connections() == []
    WebClient().get("/prices.json")
    assert cmc.get_runtime().role is Role.STANDALONE
    cmc.get_client().wait_connected(5)
    cmc.stop()

    monkeypatch.setattr("cmcsync.contrib.django.apps.detect_launch", lambda: launches["worker"])
    config.ready()
    cmc.get_client().wait_connected(5)
    # The client may see its socket open before the server has recorded the connection.
    sim.wait_for(lambda: len(sim.all_connections()) == 2, what="the worker's connection")
    assert len(sim.all_connections()) == 2


def test_autostart_off_starts_nothing_even_in_a_worker(
    sim: Simulator, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(AUTOSTART=False)
    worker = Launch(argv=("gunicorn", "site.wsgi"), server="gunicorn", worker=True)
    monkeypatch.setattr("cmcsync.contrib.django.apps.detect_launch", lambda: worker)
    app_config().ready()
    assert cmc.get_client() is None and app_config().decision.reason == "autostart is off"
    cmc.start()
    cmc.get_client().wait_connected(5)
    assert len(sim.all_connections()) == 1


# --- signals ---------------------------------------------------------------------------------


def test_events_reach_receivers_filtered_by_event_class(
    configure: Callable[..., None], received: Received
) -> None:
    configure()
    received.listen(signals.event_received, "price", sender=CryptoLatestPrice)
    received.listen(signals.event_received, "kline", sender=Kline)
    received.listen(signals.connected, "connected")
    received.listen(signals.subscription_state, "state")
    client = cmc.start().require_client()
    assert cmc.get_client() is client
    received.wait(lambda: {k["event"].crypto_id for _, k in received.of("price")} >= {1, 1027})
    sender, kwargs = received.of("price")[0]
    assert sender is CryptoLatestPrice and kwargs["client"] is client
    assert isinstance(kwargs["event"].price, float)
    assert received.of("kline") == []
    (connect,) = received.of("connected")
    assert connect[1]["reconnect"] is False and KEY not in connect[1]["url"]
    active = {k["params"]["crypto_ids"] for _, k in received.of("state") if k["state"] == "active"}
    assert active == {1, 1027}
    thread_names = set()
    signals.event_received.connect(
        lambda sender, **kw: thread_names.add(threading.current_thread().name),
        weak=False,
        dispatch_uid="thread-probe",
    )
    try:
        received.wait(lambda: len(received.of("price")) >= 6)
        received.wait(lambda: bool(thread_names))
    finally:
        signals.event_received.disconnect(dispatch_uid="thread-probe")
    assert thread_names == {"cmcsync-dispatch"}


def test_disconnects_gaps_and_errors_become_signals(
    sim: Simulator, configure: Callable[..., None], received: Received
) -> None:
    configure()
    for name in ("connected", "disconnected", "gap", "error", "subscription_state"):
        received.listen(getattr(signals, name), name)
    cmc.start()
    received.wait(
        lambda: sum(k["state"] == "active" for _, k in received.of("subscription_state")) == 2
    )
    sim.close_all(1012, "restart")
    received.wait(lambda: len(received.of("gap")) == 2, timeout=10)
    (lost,) = received.of("disconnected")
    assert lost[1]["code"] == 1012 and lost[1]["will_reconnect"] is True
    assert [k["reconnect"] for _, k in received.of("connected")] == [False, True]
    gap = received.of("gap")[0][1]
    assert gap["channel"] == PRICE and gap["start_ms"] <= gap["end_ms"]
    sim.push("this is not JSON")
    received.wait(lambda: bool(received.of("error")))
    error = received.of("error")[0][1]["error"]
    assert isinstance(error, cmcsync.ProtocolError)


def test_a_failing_receiver_is_logged_and_the_others_still_get_every_event(
    configure: Callable[..., None], received: Received, caplog: pytest.LogCaptureFixture
) -> None:
    configure()

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.event_received.connect(broken, weak=False, dispatch_uid="broken")
    received.listen(signals.event_received, "price")
    try:
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            cmc.start()
            # More events than the dispatcher tolerates failures in a row: the bridge must
            # not be switched off by a receiver's bug.
            received.wait(lambda: len(received.of("price")) >= 12, timeout=10)
    finally:
        signals.event_received.disconnect(dispatch_uid="broken")
    failures = [r for r in caplog.records if r.name == "django.dispatch"]
    assert failures and "broken" in failures[0].getMessage()
    assert failures[0].exc_info and "receiver bug" in str(failures[0].exc_info[1])
    dispatch = cmc.get_client().stats()["dispatch"]
    assert dispatch["plugin_errors"] == {} and dispatch["disabled_plugins"] == []


def test_plugins_from_dotted_paths_are_loaded(configure: Callable[..., None]) -> None:
    configure(PLUGINS=["cmcsync.testing.EventRecorder"])
    client = cmc.start().require_client()
    (recorder,) = [
        p for p in client.plugin_manager.get_plugins() if type(p).__name__ == "EventRecorder"
    ]
    recorder.wait_for_events(2, channel=PRICE)


# --- settings errors ---------------------------------------------------------------------------


def test_bad_settings_are_reported_by_check_and_refused_by_start(
    configure: Callable[..., None],
) -> None:
    configure(SUBSCRIPTION=[])
    (error,) = [m for m in run_checks() if m.id.startswith("cmcsync.")]
    assert error.id == "cmcsync.E001" and "CMCSYNC['SUBSCRIPTION']" in error.msg
    with pytest.raises(cmcsync.ConfigError, match=r"did you mean CMCSYNC\['SUBSCRIPTIONS'\]"):
        cmc.start()


def test_a_plugin_that_cannot_be_imported_is_a_check_error(configure: Callable[..., None]) -> None:
    configure(PLUGINS=["prices.nowhere.Plugin"])
    (error,) = [m for m in run_checks() if m.id.startswith("cmcsync.")]
    assert error.id == "cmcsync.E002" and "prices.nowhere.Plugin" in error.msg


def test_valid_settings_pass_the_check(configure: Callable[..., None]) -> None:
    configure()
    assert [m for m in run_checks() if m.id.startswith("cmcsync.")] == []


# --- health ------------------------------------------------------------------------------------


def test_health_view_reports_the_client(sim: Simulator, configure: Callable[..., None]) -> None:
    configure()
    web = WebClient()
    cmc.start().require_client().wait_connected(5)
    sim.wait_for(lambda: len(sim.connections()[0].subscriptions) == 2)
    response = web.get("/cmcsync/health/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok" and body["connected"] is True and body["role"] == "standalone"
    assert body["state"] == "running" and body["reconnects"] == 0
    assert set(body["subscriptions"]) == {"pending", "active", "rejected"}
    assert isinstance(body["events"], int) and body["last_close_code"] is None
    cmc.stop()
    closed = web.get("/cmcsync/health/")
    assert closed.status_code == 503 and closed.json()["role"] == "closed"


# --- cmcsync_run -----------------------------------------------------------------------------


def test_cmcsync_run_streams_to_receivers_until_the_duration_ends(
    sim: Simulator, configure: Callable[..., None], received: Received
) -> None:
    configure(AUTOSTART=False)
    received.listen(signals.event_received, "price", sender=CryptoLatestPrice)
    out = io.StringIO()
    call_command("cmcsync_run", "--duration", "1", stdout=out)
    assert len(received.of("price")) >= 2
    assert "as standalone" in out.getvalue() and "stopped" in out.getvalue()
    sim.wait_for(lambda: sim.connections() == [], what="the command closed its connection")
    assert len(sim.all_connections()) == 1


def test_cmcsync_run_in_leader_mode_stands_by_while_another_process_leads(
    sim: Simulator, configure: Callable[..., None], tmp_path: Path
) -> None:
    lock_path = str(tmp_path / "leader.lock")
    configure(LOCK_PATH=lock_path)
    holder = LeaderLock(lock_path)
    assert holder.try_acquire()
    try:
        out = io.StringIO()
        call_command("cmcsync_run", "--leader", "--duration", "0.5", stdout=out)
    finally:
        holder.release()
    assert "as follower" in out.getvalue()
    assert sim.all_connections() == []


def test_cmcsync_run_exits_3_when_the_key_is_refused(configure: Callable[..., None]) -> None:
    configure(API_KEY="wrong-key")
    with pytest.raises(CommandError) as info:
        call_command("cmcsync_run", "--duration", "10", stdout=io.StringIO())
    assert info.value.returncode == 3
    assert "wrong-key" not in str(info.value)


def test_cmcsync_run_refuses_a_second_client_in_the_same_process(
    configure: Callable[..., None],
) -> None:
    configure()
    cmc.start()
    with pytest.raises(CommandError, match="already runs"):
        call_command("cmcsync_run", "--duration", "1", stdout=io.StringIO())


# --- the example project -----------------------------------------------------------------------


def test_example_page_lists_the_coins() -> None:
    response = WebClient().get("/")
    assert response.status_code == 200
    page = response.content.decode()
    for coin_id, name in settings.PRICES_COINS.items():
        assert f'id="price-{coin_id}"' in page and name in page
    assert f"const pollMs = {settings.PRICES_POLL_MS};" in page


def test_example_prices_come_from_the_stream(configure: Callable[..., None]) -> None:
    configure(SUBSCRIPTIONS=settings.CMCSYNC["SUBSCRIPTIONS"])
    web = WebClient()
    assert web.get("/prices.json").json() == {"prices": {}}
    cmc.start()
    received = Received()
    received.listen(signals.event_received, "price", sender=CryptoLatestPrice)
    try:
        received.wait(lambda: len({k["event"].crypto_id for _, k in received.of("price")}) == 5)
    finally:
        received.disconnect()
    prices = web.get("/prices.json").json()["prices"]
    assert set(prices) == {str(coin) for coin in settings.PRICES_COINS}
    assert all(row["price"] > 0 and isinstance(row["ts"], int) for row in prices.values())
