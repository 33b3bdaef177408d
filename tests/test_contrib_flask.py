"""The Flask extension: config, start-once, the client from views, health, ``flask cmcsync run``,
leader mode, and the example app through Flask's test client."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

import cmcsync  # noqa: E402 - only once Flask is known to be installed
from cmcsync.contrib import Role  # noqa: E402
from cmcsync.contrib._launch import Launch  # noqa: E402
from cmcsync.contrib.flask import CMCSync  # noqa: E402
from cmcsync.testing import EventRecorder, Simulator  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "flask_prices"
KEY = "test-key"
PRICE = "market@crypto_latest_price"
FAST = {
    "timeouts": cmcsync.Timeouts(ack=5.0, pong=1.0, close=2.0),
    "backoff": cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1),
}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), speed=200.0, seed=5) as server:
        yield server


@pytest.fixture
def make_app(sim: Simulator) -> Iterator[Callable[..., tuple[Any, CMCSync]]]:
    """``make(plugins=(), **config)``: a Flask app on the simulator; its client is stopped after."""
    made: list[tuple[Any, CMCSync]] = []

    def make(plugins: tuple[object, ...] = (), **config: Any) -> tuple[Any, CMCSync]:
        app = flask.Flask(f"app{len(made)}")
        app.config.update(
            CMCSYNC_API_KEY=KEY,
            CMCSYNC_URL=sim.url,
            CMCSYNC_SUBSCRIPTIONS=[{"channel": PRICE, "crypto_ids": [1, 1027]}],
            CMCSYNC_AUTOLOAD=False,
            CMCSYNC_OPTIONS=FAST,
        )
        app.config.update(config)
        ext = CMCSync(app, plugins=plugins)
        made.append((app, ext))
        return app, ext

    yield make
    for app, ext in made:
        if "cmcsync" in app.extensions:
            ext.stop(app)


def test_init_app_does_not_start_under_pytest(
    sim: Simulator, make_app: Callable[..., tuple[Any, CMCSync]]
) -> None:
    app, ext = make_app()
    with app.app_context():
        assert ext.client is None and ext.runtime.role is Role.IDLE
    response = app.test_client().get("/cmcsync/health")
    assert response.status_code == 503
    assert response.get_json()["role"] == "idle" and "pytest" in response.get_json()["reason"]
    assert sim.all_connections() == []


def test_the_client_streams_to_plugins_and_is_reachable_from_views(
    make_app: Callable[..., tuple[Any, CMCSync]],
) -> None:
    recorder = EventRecorder()
    app, ext = make_app(plugins=(recorder,))

    @app.get("/subscriptions")
    def subscriptions() -> Any:
        client = ext.client
        assert client is not None
        return {"count": len(client.subscriptions())}

    ext.start(app)
    recorder.wait_for_events(3, channel=PRICE)
    assert app.test_client().get("/subscriptions").get_json() == {"count": 2}
    assert ext.get_client(app) is ext.start(app).client is not None


def test_health_route_reports_the_client(
    sim: Simulator, make_app: Callable[..., tuple[Any, CMCSync]]
) -> None:
    app, ext = make_app()
    web = app.test_client()
    ext.start(app).require_client().wait_connected(5)
    response = web.get("/cmcsync/health")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["status"] == "ok" and body["connected"] is True and body["role"] == "standalone"
    assert body["state"] == "running" and body["last_close_code"] is None
    assert sum(body["subscriptions"].values()) == 2
    ext.stop(app)
    assert web.get("/cmcsync/health").status_code == 503


def test_health_route_can_move_or_go(make_app: Callable[..., tuple[Any, CMCSync]]) -> None:
    moved, _ = make_app(CMCSYNC_HEALTH_URL="/ops/stream")
    assert moved.test_client().get("/ops/stream").status_code == 503
    assert moved.test_client().get("/cmcsync/health").status_code == 404
    gone, _ = make_app(CMCSYNC_HEALTH_URL=None)
    assert gone.test_client().get("/cmcsync/health").status_code == 404


def test_config_errors_name_the_key(make_app: Callable[..., tuple[Any, CMCSync]]) -> None:
    with pytest.raises(cmcsync.ConfigError, match="CMCSYNC_SUBSCRIPTION; did you mean CMCSYNC_SUB"):
        make_app(CMCSYNC_SUBSCRIPTION=[])
    with pytest.raises(cmcsync.ConfigError, match=r"CMCSYNC_SUBSCRIPTIONS\[0\].*unknown channel"):
        make_app(CMCSYNC_SUBSCRIPTIONS=[{"channel": "market@nothing", "crypto_ids": [1]}])
    with pytest.raises(cmcsync.ConfigError, match="CMCSYNC_HEALTH_URL must be a path"):
        make_app(CMCSYNC_HEALTH_URL="health")
    app, ext = make_app()
    with pytest.raises(cmcsync.ConfigError, match="already initialised"):
        ext.init_app(app)
    with pytest.raises(cmcsync.ConfigError, match="not initialised"):
        ext.get_client(flask.Flask("bare"))


def test_plugins_from_dotted_paths(make_app: Callable[..., tuple[Any, CMCSync]]) -> None:
    app, ext = make_app(CMCSYNC_PLUGINS=["cmcsync.testing.EventRecorder"])
    client = ext.start(app).require_client()
    (recorder,) = [p for p in client.plugin_manager.get_plugins() if isinstance(p, EventRecorder)]
    recorder.wait_for_events(2, channel=PRICE)


def test_a_worker_starts_at_init_and_a_master_waits_for_its_workers(
    sim: Simulator, make_app: Callable[..., tuple[Any, CMCSync]], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Launch(argv=("gunicorn", "app:app"), server="gunicorn", worker=True)
    monkeypatch.setattr("cmcsync.contrib.flask.detect_launch", lambda: worker)
    app, ext = make_app()
    with app.app_context():
        assert ext.runtime.role is Role.STANDALONE
        ext.runtime.require_client().wait_connected(5)

    master = Launch(argv=("gunicorn", "app:app"), server="gunicorn")
    monkeypatch.setattr("cmcsync.contrib.flask.detect_launch", lambda: master)
    app, ext = make_app()
    with app.app_context():
        assert ext.runtime.role is Role.WAITING
    assert len(sim.all_connections()) == 1
    app.test_client().get("/cmcsync/health")  # a request served here after all starts it
    with app.app_context():
        assert ext.runtime.role is Role.STANDALONE


def test_autostart_off_wins_and_a_missing_key_says_how_to_fix_it(
    make_app: Callable[..., tuple[Any, CMCSync]], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Launch(argv=("gunicorn", "app:app"), server="gunicorn", worker=True)
    monkeypatch.setattr("cmcsync.contrib.flask.detect_launch", lambda: worker)
    monkeypatch.delenv("CMC_PRO_API_KEY", raising=False)
    app, ext = make_app(CMCSYNC_AUTOSTART=False, CMCSYNC_API_KEY=None)
    with app.app_context():
        assert ext.runtime.role is Role.IDLE
    with pytest.raises(cmcsync.ConfigError, match=r"CMC_PRO_API_KEY.*CMCSYNC_AUTOSTART = False"):
        make_app(CMCSYNC_API_KEY=None)


def test_leader_mode_runs_one_client_among_apps_sharing_the_lock(
    sim: Simulator, make_app: Callable[..., tuple[Any, CMCSync]], tmp_path: Path
) -> None:
    lock = str(tmp_path / "leader.lock")
    first, first_ext = make_app(CMCSYNC_LEADER=True, CMCSYNC_LOCK_PATH=lock)
    second, second_ext = make_app(CMCSYNC_LEADER="true", CMCSYNC_LOCK_PATH=lock)
    first_ext.start(first).require_client().wait_connected(5)
    second_ext.start(second)
    with second.app_context():
        assert second_ext.runtime.role is Role.FOLLOWER and second_ext.client is None
    body = second.test_client().get("/cmcsync/health").get_json()
    assert body["role"] == "follower" and body["status"] == "ok"
    assert len(sim.all_connections()) == 1


# --- flask cmcsync run -------------------------------------------------------------------------


def test_flask_cmcsync_run_streams_until_the_duration_ends(
    sim: Simulator, make_app: Callable[..., tuple[Any, CMCSync]]
) -> None:
    recorder = EventRecorder()
    app, _ = make_app(plugins=(recorder,))
    result = app.test_cli_runner().invoke(args=["cmcsync", "run", "--duration", "1"])
    assert result.exit_code == 0, result.output
    assert "as standalone" in result.output and "stopped" in result.output
    assert len(recorder.by_channel(PRICE)) >= 2
    sim.wait_for(lambda: sim.connections() == [], what="the command closed its connection")
    assert len(sim.all_connections()) == 1


def test_flask_cmcsync_run_exits_3_when_the_key_is_refused(
    make_app: Callable[..., tuple[Any, CMCSync]],
) -> None:
    app, _ = make_app(CMCSYNC_API_KEY="wrong-key")
    result = app.test_cli_runner().invoke(args=["cmcsync", "run", "--duration", "10"])
    assert result.exit_code == 3
    assert "API key invalid" in result.output
    assert "wrong-key" not in result.output


def test_flask_cmcsync_run_refuses_a_bad_duration(
    make_app: Callable[..., tuple[Any, CMCSync]],
) -> None:
    app, _ = make_app()
    result = app.test_cli_runner().invoke(args=["cmcsync", "run", "--duration", "0"])
    assert result.exit_code == 2 and "--duration" in result.output


# --- the example app ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prices_app() -> Any:
    """The example's module."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import prices_app
    finally:
        sys.path.remove(str(EXAMPLE))
    return prices_app


@pytest.fixture
def example(sim: Simulator, prices_app: Any) -> Iterator[Callable[..., Any]]:
    """``make(**config)``: the example app on the simulator; its client is stopped after."""
    made: list[Any] = []

    def make(**config: Any) -> Any:
        app = prices_app.create_app(
            {
                "CMCSYNC_API_KEY": KEY,
                "CMCSYNC_URL": sim.url,
                "CMCSYNC_AUTOLOAD": False,
                "CMCSYNC_OPTIONS": FAST,
                **config,
            }
        )
        made.append(app)
        return app

    yield make
    for app in made:
        prices_app.cmc.stop(app)


def test_example_page_lists_the_coins(example: Callable[..., Any]) -> None:
    app = example(PRICES_POLL_MS=250)
    page = app.test_client().get("/").get_data(as_text=True)
    for name in ("Bitcoin", "Ethereum", "Solana"):
        assert name in page
    assert 'id="price-1"' in page and 'id="price-1027"' in page
    assert "const pollMs = 250;" in page


def wait_for_prices(web: Any, count: int, timeout: float = 5.0) -> dict[str, Any]:
    """Poll the example's JSON feed, as its page does, until ``count`` coins have a price."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        prices: dict[str, Any] = web.get("/prices.json").get_json()["prices"]
        if len(prices) >= count or time.monotonic() > deadline:
            return prices
        pause.wait(0.05)


def test_example_serves_streamed_prices(example: Callable[..., Any], prices_app: Any) -> None:
    app = example()
    web = app.test_client()
    assert web.get("/prices.json").get_json() == {"prices": {}}
    prices_app.cmc.start(app)
    prices = wait_for_prices(web, 5)
    assert set(prices) == {"1", "1027", "1839", "5426", "52"}
    assert all(row["price"] > 0 for row in prices.values())


def test_example_shares_prices_with_followers_through_the_file(
    example: Callable[..., Any], prices_app: Any, tmp_path: Path
) -> None:
    shared = {
        "CMCSYNC_LEADER": True,
        "CMCSYNC_LOCK_PATH": str(tmp_path / "leader.lock"),
        "PRICES_FILE": str(tmp_path / "prices.json"),
    }
    leader, follower = example(**shared), example(**shared)
    prices_app.cmc.start(leader)
    assert prices_app.cmc.start(follower).role is Role.FOLLOWER
    prices = wait_for_prices(follower.test_client(), 5)
    assert len(prices) == 5
