"""The example apps served for real: a browser sees prices change, gunicorn workers share one
connection, and Django's management commands open none."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cmcsync.testing import Simulator

ROOT = Path(__file__).resolve().parent.parent
FLASK_EXAMPLE = ROOT / "docs" / "examples" / "flask_prices"
DJANGO_EXAMPLE = ROOT / "docs" / "examples" / "django_prices"
KEY = "test-key"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), speed=100.0) as server:
        yield server


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Re-check ``predicate`` every 50 ms until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        pause.wait(0.05)


def get_json(url: str) -> tuple[int, Any]:
    """GET a JSON document; the status and the body, for 5xx answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server subprocess in its own session, its output collected by a thread."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="example-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()

    def wait_line(self, needle: str, timeout: float) -> str:
        with self._cond:
            found = self._cond.wait_for(
                lambda: next((line for line in self.lines if needle in line), None), timeout
            )
        if not found:
            raise TimeoutError(f"{needle!r} not printed within {timeout} s:\n{self.output()}")
        return found

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines[-60:])

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


# --- the Flask example in a browser --------------------------------------------------------------


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium on one page, driven through the DevTools protocol."""

    def __init__(self, url: str, profile: Path) -> None:
        assert CHROMIUM is not None
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._next_id = 0
        active_port = profile / "DevToolsActivePort"
        port = until(
            lambda: active_port.exists() and active_port.read_text().split("\n")[0].strip(),
            30,
            "Chromium's DevTools port",
        )
        page = until(lambda: self._page(int(port), url), 30, "the page target")
        import websocket

        self.socket = websocket.create_connection(page, timeout=10, suppress_origin=True)

    @staticmethod
    def _page(port: int, url: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                targets = json.load(answer)
        except OSError:
            return None
        for target in targets:
            if target.get("type") == "page" and target.get("url", "").startswith(url):
                found: str = target["webSocketDebuggerUrl"]
                return found
        return None

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        self._next_id += 1
        request = {
            "id": self._next_id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": True},
        }
        self.socket.send(json.dumps(request))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == self._next_id:
                return answer["result"]["result"].get("value")

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
def test_a_browser_sees_the_flask_example_price_change(sim: Simulator, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    from werkzeug.serving import make_server

    sys.path.insert(0, str(FLASK_EXAMPLE))
    try:
        import prices_app
    finally:
        sys.path.remove(str(FLASK_EXAMPLE))
    app = prices_app.create_app(
        {
            "CMCSYNC_API_KEY": KEY,
            "CMCSYNC_URL": sim.url,
            "CMCSYNC_AUTOLOAD": False,
            "PRICES_POLL_MS": 200,
        }
    )
    runtime = prices_app.cmc.start(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="example-http", daemon=True)
    thread.start()
    browser = None
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        browser = Browser(url, tmp_path / "profile")
        read = "document.getElementById('price-1').textContent"
        first = until(lambda: (text := browser.evaluate(read)) != "…" and text, 20, "a price")
        changed = until(lambda: (text := browser.evaluate(read)) != first and text, 20, "a change")
        assert float(first.replace(",", "")) > 0 and float(changed.replace(",", "")) > 0
        updates = browser.evaluate("Number(document.getElementById('updates-1').textContent)")
        assert updates >= 1
        assert browser.evaluate("document.getElementById('status').textContent").startswith(
            "Updated"
        )
    finally:
        if browser is not None:
            browser.close()
        server.shutdown()
        thread.join(5)
        server.server_close()
        runtime.close()


# --- the Flask example under gunicorn, leader mode ----------------------------------------------


def gunicorn_args() -> list[str]:
    from gunicorn import config

    names = {setting.name for setting in config.KNOWN_SETTINGS}
    # gunicorn 24+ opens a control socket in the home directory unless told not to.
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def test_gunicorn_workers_in_leader_mode_share_one_connection(
    sim: Simulator, tmp_path: Path
) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    lock = tmp_path / "leader.lock"
    ready = tmp_path / "ready"
    ready.mkdir()
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(
        "import os\n\n\n"
        "def post_worker_init(worker):\n"
        f"    open(os.path.join({str(ready)!r}, str(worker.pid)), 'w').close()\n"
    )
    server = Server(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "4",
            "-b",
            "127.0.0.1:0",
            "-c",
            str(config),
            *gunicorn_args(),
            "prices_app:create_app()",
        ],
        cwd=FLASK_EXAMPLE,
        env={
            "CMC_PRO_API_KEY": KEY,
            "FLASK_CMCSYNC_URL": sim.url,
            "FLASK_CMCSYNC_LEADER": "true",
            "FLASK_CMCSYNC_LOCK_PATH": str(lock),
            "FLASK_CMCSYNC_AUTOLOAD": "false",
            "FLASK_PRICES_FILE": str(tmp_path / "prices.json"),
        },
    )
    try:
        listening = server.wait_line("Listening at: http://127.0.0.1:", 30)
        base = listening.split("Listening at: ")[1].split()[0]
        until(lambda: len(list(ready.iterdir())) == 4, 30, "4 workers with the app loaded")
        sim.wait_for(lambda: len(sim.connections()) == 1, timeout=10, what="the leader connects")
        assert len(sim.all_connections()) == 1, "one connection for four workers"
        leader = int(lock.read_text())
        assert str(leader) in {path.name for path in ready.iterdir()}

        # The leader writes the shared file; whichever worker answers serves every price.
        until(
            lambda: len(get_json(f"{base}/prices.json")[1]["prices"]) == 5,
            10,
            "the prices, from any worker",
        )

        killed_at = time.monotonic()
        os.kill(leader, signal.SIGKILL)
        sim.wait_for(
            lambda: len(sim.all_connections()) == 2 and len(sim.connections()) == 1,
            timeout=10,
            what="a new leader connects",
        )
        assert time.monotonic() - killed_at < 5
        new_leader = int(until(lambda: lock.read_text().strip(), 5, "the new leader's pid"))
        assert new_leader != leader
        # Any worker answers: the new leader once connected, or a follower.
        _, body = until(
            lambda: (answer := get_json(f"{base}/cmcsync/health"))[0] == 200 and answer,
            5,
            "a healthy worker",
        )
        assert body["role"] in ("leader", "follower")
        assert body["leader_pid"] == new_leader
    finally:
        server.stop()
    assert len(sim.all_connections()) == 2


# --- the Django example's management commands -----------------------------------------------------


def django_env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    return {
        "CMC_PRO_API_KEY": KEY,
        "CMCSYNC_URL": sim.url,
        "PRICES_DB": str(tmp_path / "db.sqlite3"),
        "PRICES_CACHE_DIR": str(tmp_path / "cache"),
        "PRICES_POLL_MS": "200",
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DJANGO_EXAMPLE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_django_management_commands_open_no_connection(sim: Simulator, tmp_path: Path) -> None:
    pytest.importorskip("django")
    env = django_env(sim, tmp_path)
    migrate = manage("migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "db.sqlite3").exists()
    check = manage("check", env=env)
    assert check.returncode == 0 and "no issues" in check.stdout, check.stderr
    shell = manage(
        "shell",
        "-c",
        "from cmcsync.contrib.django import get_client; print(get_client())",
        env=env,
    )
    assert shell.returncode == 0 and shell.stdout.split()[-1] == "None", shell.stderr
    assert sim.handshakes == [], "no command may connect"


def test_django_runserver_connects_once_under_the_autoreloader(
    sim: Simulator, tmp_path: Path
) -> None:
    pytest.importorskip("django")
    port = free_port()
    server = Server(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
        cwd=DJANGO_EXAMPLE,
        env=django_env(sim, tmp_path),
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> Any:
            try:
                status, body = get_json(f"{base}/cmcsync/health/")
            except OSError:
                return None
            return body if status == 200 else None

        body = until(healthy, 30, "runserver's health check")
        assert body["role"] == "standalone" and body["connected"] is True
        prices = until(lambda: get_json(f"{base}/prices.json")[1]["prices"], 10, "prices")
        assert all(row["price"] > 0 for row in prices.values())
        assert len(sim.all_connections()) == 1, "the autoreloader's watcher must not connect"
    finally:
        server.stop()
