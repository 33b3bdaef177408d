"""Fixtures for cmcsync-sql: the simulator, and real PostgreSQL servers.

``initdb`` runs once per session; each server starts on a copy of that cluster, which takes
milliseconds. Tests that need PostgreSQL skip, saying why, when it is not installed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import cmcsync_sql  # noqa: F401
except ImportError:  # running from a source tree without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqltesting import KEY, PostgresServer, postgres_bin

from cmcsync.testing import Simulator

_Template = tuple[Path, Path, list[str]]


@pytest.fixture(autouse=True)
def _no_leaked_threads(cmcsync_no_leaked_threads: None) -> None:
    """Every test ends with no cmcsync-* thread running, the writer thread included."""


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins read CMCSYNC_SQL_* by default: tests start from none."""
    for name in [name for name in os.environ if name.startswith("CMCSYNC_SQL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The simulator at 100 times real speed."""
    with Simulator(api_keys=(KEY,), speed=100.0, seed=11) as server:
        yield server


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[_Template]:
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    run_as: list[str] = []
    owner = os.getuid()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run PostgreSQL")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="cmcsync-pg-template-"))
    os.chown(root, owner, -1)
    data = root / "data"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "cmcsync"]
    initdb += ["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
    subprocess.run([*run_as, *initdb], check=True, capture_output=True, timeout=120)
    try:
        yield bindir, data, run_as
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _server(template: _Template) -> tuple[PostgresServer, Path]:
    bindir, data, run_as = template
    root = Path(tempfile.mkdtemp(prefix="cmcsync-pg-"))
    subprocess.run(["cp", "-a", str(data), str(root / "data")], check=True)
    os.chown(root, (root / "data").stat().st_uid, -1)
    return PostgresServer(bindir, root / "data", run_as), root


def _discard(server: PostgresServer, root: Path) -> None:
    with contextlib.suppress(RuntimeError):  # the test may have stopped it already
        server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _shared_postgres(_postgres_template: _Template) -> Iterator[PostgresServer]:
    server, root = _server(_postgres_template)
    server.start()
    try:
        yield server
    finally:
        _discard(server, root)


@pytest.fixture
def postgres(_shared_postgres: PostgresServer) -> PostgresServer:
    """The session's PostgreSQL server; tests keep apart by their table prefix."""
    return _shared_postgres


@pytest.fixture
def make_postgres(_postgres_template: _Template) -> Iterator[Callable[[], PostgresServer]]:
    """Start a PostgreSQL server of the test's own (to stop and start); removed after."""
    made: list[tuple[PostgresServer, Path]] = []

    def make() -> PostgresServer:
        server, root = _server(_postgres_template)
        made.append((server, root))
        server.start()
        return server

    try:
        yield make
    finally:
        for server, root in made:
            _discard(server, root)
