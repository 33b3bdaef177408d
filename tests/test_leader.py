"""The web integrations' machinery: start-once rules, the runtime, fork safety, leader mode."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection as mp_connection
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cmcsync
from cmcsync.contrib import Role, Runtime
from cmcsync.contrib._launch import Action, Launch, decide, program_name
from cmcsync.contrib._leader import LeaderLock, default_lock_path, read_holder_pid
from cmcsync.contrib._settings import IntegrationSettings, build_client, import_plugin
from cmcsync.testing import EventRecorder, Simulator

KEY = "test-key"
PRICE = "market@crypto_latest_price"


def launch(*argv: str, server: str | None = None, worker: bool = False, **env: str) -> Launch:
    return Launch(argv=argv, environ=env, server=server, worker=worker)


# --- the start-once rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "migrate",
        "makemigrations",
        "shell",
        "check",
        "test",
        "collectstatic",
        "cmcsync_run",
        "createsuperuser",
        "dbshell",
    ],
)
def test_management_commands_other_than_runserver_never_start(command: str) -> None:
    decision = decide(launch("manage.py", command, "--verbosity", "2"))
    assert decision.action is Action.SKIP
    assert command in decision.reason


def test_runserver_starts_only_in_the_autoreloader_child() -> None:
    watcher = decide(launch("/srv/site/manage.py", "runserver", "0.0.0.0:8000"))
    child = decide(launch("/srv/site/manage.py", "runserver", "0.0.0.0:8000", RUN_MAIN="true"))
    assert watcher.action is Action.SKIP and "watcher" in watcher.reason
    assert child.action is Action.START


def test_runserver_without_the_autoreloader_starts() -> None:
    assert decide(launch("manage.py", "runserver", "--noreload")).action is Action.START
    assert decide(launch("django-admin", "runserver", "--noreload")).action is Action.START


def test_python_dash_m_counts_as_the_package() -> None:
    assert program_name(["/usr/lib/python3/site-packages/django/__main__.py"]) == "django"
    assert program_name(["/venv/bin/gunicorn"]) == "gunicorn"
    assert program_name([]) == ""
    main = "/usr/lib/python3/site-packages/django/__main__.py"
    assert decide(launch(main, "migrate")).action is Action.SKIP


@pytest.mark.parametrize(
    ("argv", "env", "action"),
    [
        (("flask", "run"), {}, Action.START),
        (("flask", "--app", "hello", "run"), {}, Action.START),
        (("flask", "-A", "run", "shell"), {}, Action.SKIP),  # the app is named "run"
        (("flask", "run", "--debug"), {}, Action.SKIP),  # the reloader's watcher
        (("flask", "--debug", "run"), {"WERKZEUG_RUN_MAIN": "true"}, Action.START),
        (("flask", "run", "--debug", "--no-reload"), {}, Action.START),
        (("flask", "run"), {"FLASK_DEBUG": "1"}, Action.SKIP),
        (("flask", "run"), {"FLASK_DEBUG": "0"}, Action.START),
        (("flask", "run", "--reload"), {}, Action.SKIP),
        (("flask", "shell"), {}, Action.SKIP),
        (("flask", "routes"), {}, Action.SKIP),
        (("flask", "cmcsync", "run"), {}, Action.SKIP),
        (("flask",), {}, Action.SKIP),
    ],
)
def test_flask_commands(argv: tuple[str, ...], env: dict[str, str], action: Action) -> None:
    assert decide(launch(*argv, **env)).action is action


def test_prefork_masters_defer_to_their_workers() -> None:
    master = decide(launch("gunicorn", "-w", "4", "app:app", server="gunicorn"))
    worker = decide(launch("gunicorn", "-w", "4", "app:app", server="gunicorn", worker=True))
    uwsgi_master = decide(launch("uwsgi", server="uwsgi"))
    assert master.action is Action.AFTER_FORK and "master" in master.reason
    assert worker.action is Action.START
    assert uwsgi_master.action is Action.AFTER_FORK


def test_test_runners_and_task_workers_never_start() -> None:
    assert decide(launch("/venv/bin/pytest", "-q")).action is Action.SKIP
    assert decide(launch("/venv/lib/pytest/__main__.py")).action is Action.SKIP
    assert decide(launch("celery", "-A", "proj", "worker")).action is Action.SKIP


def test_other_servers_start_and_autostart_off_wins_over_everything() -> None:
    assert decide(launch("mod_wsgi")).action is Action.START
    assert decide(launch("app.py")).action is Action.START
    off = decide(launch("gunicorn", server="gunicorn", worker=True), autostart=False)
    assert off.action is Action.SKIP and off.reason == "autostart is off"


# --- settings --------------------------------------------------------------------------------


def name_of(key: str) -> str:
    return f"CMCSYNC[{key!r}]"


def test_settings_accept_dicts_and_pairs_and_reject_bad_params() -> None:
    settings = IntegrationSettings.from_mapping(
        {
            "SUBSCRIPTIONS": [
                {"channel": "crypto_latest_price", "crypto_ids": [1, 1027]},
                ("onchain@kline", {"platform_id": 14, "address": "0xabc", "interval": "1m"}),
            ],
            "LEADER": "true",
            "AUTOSTART": False,
        },
        name_of=name_of,
    )
    assert [channel for channel, _ in settings.subscriptions] == [PRICE, "onchain@kline"]
    assert settings.leader is True and settings.autostart is False
    with pytest.raises(cmcsync.ConfigError, match=r"CMCSYNC\['SUBSCRIPTIONS'\]\[0\].*crypto_ids"):
        IntegrationSettings.from_mapping({"SUBSCRIPTIONS": [{"channel": PRICE}]}, name_of=name_of)


def test_unknown_or_wrong_settings_name_the_setting() -> None:
    with pytest.raises(
        cmcsync.ConfigError,
        match=r"CMCSYNC\['SUBSCRIPTION'\].*did you mean "
        r"CMCSYNC\['SUBSCRIPTIONS'\]",
    ):
        IntegrationSettings.from_mapping({"SUBSCRIPTION": []}, name_of=name_of)
    with pytest.raises(cmcsync.ConfigError, match=r"CMCSYNC\['LEADER'\] must be True or False"):
        IntegrationSettings.from_mapping({"LEADER": "maybe"}, name_of=name_of)
    with pytest.raises(cmcsync.ConfigError, match=r"OPTIONS.*'timeout'.*does not take"):
        IntegrationSettings.from_mapping({"OPTIONS": {"timeout": 3}}, name_of=name_of)
    with pytest.raises(cmcsync.ConfigError, match=r"CMCSYNC\['URL'\]: refusing plain ws://"):
        IntegrationSettings.from_mapping({"URL": "ws://example.com/v1"}, name_of=name_of)


def test_a_bad_key_setting_never_shows_the_key() -> None:
    settings = IntegrationSettings.from_mapping({"API_KEY": "  s3cret-key  "}, name_of=name_of)
    assert settings.api_key == "s3cret-key"
    assert "s3cret" not in repr(settings)


def test_plugins_come_from_dotted_paths() -> None:
    recorder = import_plugin("cmcsync.testing.EventRecorder")
    assert isinstance(recorder, EventRecorder)
    module = import_plugin("cmcsync.testing")
    assert module is sys.modules["cmcsync.testing"]
    with pytest.raises(cmcsync.ConfigError, match="has no attribute 'Nope'"):
        import_plugin("cmcsync.testing.Nope")
    with pytest.raises(cmcsync.ConfigError, match="cannot import 'no_such_module_here'"):
        import_plugin("no_such_module_here")
    with pytest.raises(cmcsync.ConfigError, match="not a dotted path"):
        IntegrationSettings.from_mapping({"PLUGINS": ["not a path"]}, name_of=name_of)


# --- the lock --------------------------------------------------------------------------------


def test_default_lock_path_is_keyed_by_url_and_key_without_showing_the_key() -> None:
    path = default_lock_path("wss://pro-stream.coinmarketcap.com/v1", "s3cret-key")
    assert "s3cret" not in path
    assert os.path.dirname(path) == tempfile.gettempdir()
    assert path != default_lock_path("wss://pro-stream.coinmarketcap.com/v1", "other-key")
    assert path != default_lock_path("ws://127.0.0.1:8765/v1", "s3cret-key")
    assert path == default_lock_path("wss://pro-stream.coinmarketcap.com/v1", "s3cret-key")


def test_one_lock_holder_at_a_time_and_the_pid_is_recorded(tmp_path: Path) -> None:
    path = str(tmp_path / "leader.lock")
    first, second = LeaderLock(path), LeaderLock(path)
    try:
        assert first.try_acquire() and first.held
        assert not second.try_acquire()
        assert read_holder_pid(path) == os.getpid()
        first.release()
        assert read_holder_pid(path) is None
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


def test_an_unusable_lock_path_is_a_clear_error(tmp_path: Path) -> None:
    lock = LeaderLock(str(tmp_path / "missing-dir" / "leader.lock"))
    with pytest.raises(cmcsync.ConfigError, match=r"cannot open the leader lock file.*LOCK_PATH"):
        lock.try_acquire()


# --- the runtime -----------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), speed=200.0, seed=3) as server:
        yield server


def client_factory(url: str, recorder: EventRecorder | None = None) -> Callable[[], cmcsync.Client]:
    settings = IntegrationSettings(
        api_key=KEY,
        url=url,
        subscriptions=((PRICE, {"crypto_ids": [1]}),),
        autoload=False,
        options={
            "timeouts": cmcsync.Timeouts(ack=5.0, pong=1.0, close=2.0),
            "backoff": cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1),
        },
    )
    return lambda: build_client(settings, [recorder] if recorder else [], name_of=name_of)


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for runtime in made:
        runtime.close()


def test_standalone_runtime_streams_and_reports_health(
    sim: Simulator, runtimes: list[Runtime]
) -> None:
    recorder = EventRecorder()
    runtime = Runtime(client_factory(sim.url, recorder))
    runtimes.append(runtime)
    status, body = runtime.health()
    assert status == 503 and body["role"] == "idle"
    with pytest.raises(cmcsync.ClientClosedError, match="not started in this process"):
        runtime.require_client()
    runtime.start()
    assert runtime.start() is runtime and runtime.role is Role.STANDALONE
    recorder.wait_for_events(2, channel=PRICE)
    status, body = runtime.health()
    assert status == 200
    assert body["status"] == "ok" and body["connected"] is True and body["role"] == "standalone"
    assert body["subscriptions"]["active"] == 1 and body["events"] >= 2
    assert body["last_close_code"] is None and body["reconnects"] == 0
    assert KEY not in str(body)
    runtime.close()
    assert runtime.client is None and runtime.health()[0] == 503
    with pytest.raises(cmcsync.ClientClosedError, match="closed"):
        runtime.start()


def test_health_is_503_with_the_error_when_the_key_is_refused(runtimes: list[Runtime]) -> None:
    with Simulator(api_keys=("another-key",), speed=200.0) as refusing:
        runtime = Runtime(client_factory(refusing.url))
        runtimes.append(runtime)
        runtime.start()
        client = runtime.require_client()
        with pytest.raises(cmcsync.AuthError):
            client.wait(5)
        status, body = runtime.health()
        assert status == 503
        assert body["state"] == "failed" and body["error"].startswith("AuthError")
        assert KEY not in str(body)


def test_only_one_runtime_leads_and_another_takes_over_when_it_closes(
    sim: Simulator, runtimes: list[Runtime], tmp_path: Path
) -> None:
    lock = str(tmp_path / "leader.lock")
    first = Runtime(client_factory(sim.url), lock_path=lock, poll_interval=0.05)
    second = Runtime(client_factory(sim.url), lock_path=lock, poll_interval=0.05)
    runtimes.extend([first, second])
    first.start()
    second.start()
    assert first.role is Role.LEADER and second.role is Role.FOLLOWER
    assert second.client is None
    with pytest.raises(cmcsync.ClientClosedError, match="follower in leader mode"):
        second.require_client()
    assert second.health()[0] == 200, "a follower is healthy: another process streams"
    sim.wait_for(lambda: len(sim.connections()) == 1, what="the leader's connection")
    assert len(sim.all_connections()) == 1
    first.close()
    assert second.wait_role({Role.LEADER}, timeout=5), second.role
    sim.wait_for(lambda: len(sim.connections()) == 1, what="the new leader's connection")
    assert len(sim.all_connections()) == 2


def test_a_follower_stops_waiting_when_closed(
    sim: Simulator, runtimes: list[Runtime], tmp_path: Path
) -> None:
    lock = str(tmp_path / "leader.lock")
    holder = LeaderLock(lock)
    assert holder.try_acquire()
    try:
        follower = Runtime(client_factory(sim.url), lock_path=lock, poll_interval=0.05)
        runtimes.append(follower)
        follower.start()
        assert follower.role is Role.FOLLOWER
        follower.close(timeout=2)
        assert not [t for t in threading.enumerate() if t.name == "cmcsync-leader-wait"]
        assert sim.all_connections() == []
    finally:
        holder.release()


# --- fork ------------------------------------------------------------------------------------


def fork_and_report(child: Callable[[], str]) -> str:
    """Fork; run ``child`` in the child and return what it returned (or its error)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() with threads running; the runtime is built for it.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(30)  # a child that hangs must not hang the test run
        os.close(read_fd)
        try:
            text = child()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            text = f"error: {type(exc).__name__}: {exc}"
        os.write(write_fd, text.encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(4096):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return b"".join(chunks).decode()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_a_runtime_waiting_for_fork_starts_in_the_child_only(
    sim: Simulator, runtimes: list[Runtime], tmp_path: Path
) -> None:
    runtime = Runtime(client_factory(sim.url), lock_path=str(tmp_path / "leader.lock"))
    runtimes.append(runtime)
    runtime.defer_until_fork()

    def child() -> str:
        role = runtime.role.value
        client = runtime.require_client()
        client.wait_connected(5)
        runtime.close()
        return role

    assert fork_and_report(child) == "leader"
    assert runtime.role is Role.WAITING and runtime.client is None
    assert len(sim.all_connections()) == 1, "one connection, from the child"


@needs_fork
def test_a_running_runtime_does_not_leak_into_a_forked_child(
    sim: Simulator, runtimes: list[Runtime], tmp_path: Path
) -> None:
    lock = str(tmp_path / "leader.lock")
    runtime = Runtime(client_factory(sim.url), lock_path=lock)
    runtimes.append(runtime)
    runtime.start()
    inherited = runtime.require_client()
    inherited.wait_connected(5)

    def child() -> str:
        out = [runtime.role.value, str(runtime.client)]
        try:
            runtime.require_client()
        except cmcsync.ClientClosedError as exc:
            out.append(str(exc))
        try:
            inherited.subscribe(PRICE, crypto_ids=[2])
        except cmcsync.ClientClosedError as exc:
            out.append(str(exc))
        out.append(str(LeaderLock(lock).try_acquire()))
        return "|".join(out)

    role, client, runtime_error, client_error, took_lock = fork_and_report(child).split("|")
    assert (role, client) == ("idle", "None")
    assert "before fork()" in runtime_error and "start()" in runtime_error
    assert "Create a new Client in the child" in client_error
    assert took_lock == "False", "the parent still holds the lock"
    assert runtime.role is Role.LEADER and inherited.connected
    assert len(sim.all_connections()) == 1


# --- several processes -----------------------------------------------------------------------


def run_candidate(url: str, lock: str, conn: Any, stop_file: str) -> None:
    """A process that runs a leader-mode runtime and reports its role changes."""
    runtime = Runtime(client_factory(url), lock_path=lock, poll_interval=0.1)
    runtime.start()
    role = runtime.role
    conn.send(role.value)
    deadline = time.monotonic() + 60
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        if runtime.wait_role(set(Role) - {role}, timeout=0.05):
            role = runtime.role
            conn.send(role.value)
    runtime.close()


class Candidates:
    """Processes running :func:`run_candidate`; each reports on a pipe of its own, since a
    shared queue or event may be left locked by a process killed with SIGKILL."""

    def __init__(self, url: str, lock: str, count: int, tmp_path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop_file = str(tmp_path / "stop")
        self.processes = []
        self.pipes: dict[Any, int] = {}
        for _ in range(count):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=run_candidate, args=(url, lock, writer, self.stop_file), daemon=True
            )
            process.start()
            writer.close()
            self.processes.append(process)
            self.pipes[reader] = process.pid

    def next_report(self, timeout: float) -> tuple[int, str]:
        """The next (pid, role) any process reports; raises TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.pipes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for reader in mp_connection.wait(list(self.pipes), remaining):
                assert isinstance(reader, mp_connection.Connection)
                try:
                    return self.pipes[reader], reader.recv()
                except EOFError:  # that process is gone
                    del self.pipes[reader]
        raise TimeoutError(f"no report within {timeout} s")

    def stop(self) -> list[int | None]:
        Path(self.stop_file).touch()
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
        for reader in self.pipes:
            reader.close()
        return [process.exitcode for process in self.processes]


def test_one_of_several_processes_connects_and_a_killed_leader_is_replaced(
    sim: Simulator, tmp_path: Path
) -> None:
    lock = str(tmp_path / "leader.lock")
    candidates = Candidates(sim.url, lock, 3, tmp_path)
    try:
        roles = dict(candidates.next_report(30) for _ in range(3))
        assert sorted(roles.values()) == ["follower", "follower", "leader"]
        (leader,) = [pid for pid, role in roles.items() if role == "leader"]
        sim.wait_for(
            lambda: len(sim.connections()) == 1, timeout=10, what="the leader's connection"
        )
        assert len(sim.all_connections()) == 1
        assert read_holder_pid(lock) == leader

        killed_at = time.monotonic()
        os.kill(leader, signal.SIGKILL)
        pid, role = candidates.next_report(10)
        assert (role, pid != leader) == ("leader", True)
        sim.wait_for(
            lambda: len(sim.all_connections()) == 2 and len(sim.connections()) == 1,
            timeout=10,
            what="the new leader's connection",
        )
        assert time.monotonic() - killed_at < 5
        assert read_holder_pid(lock) == pid
        with pytest.raises(TimeoutError):
            candidates.next_report(0.3)  # nobody else took over
    finally:
        codes = candidates.stop()
    assert sorted(codes, key=str) == [-signal.SIGKILL, 0, 0]
