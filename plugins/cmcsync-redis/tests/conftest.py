"""Fixtures for cmcsync-redis: the simulator, and real Redis servers.

Tests that need Redis skip, saying why, when ``redis-server`` is not installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import cmcsync_redis  # noqa: F401
except ImportError:  # running from a source tree without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redistesting import KEY, RedisServer, redis_binary

from cmcsync.testing import Simulator


@pytest.fixture(autouse=True)
def _no_leaked_threads(cmcsync_no_leaked_threads: None) -> None:
    """Every test ends with no cmcsync-* thread running, the writer thread included."""


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins read CMCSYNC_REDIS_* by default: tests start from none."""
    for name in [name for name in os.environ if name.startswith("CMCSYNC_REDIS_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The simulator at 100 times real speed."""
    with Simulator(api_keys=(KEY,), speed=100.0, seed=11) as server:
        yield server


@pytest.fixture(scope="session")
def _redis_binary() -> str:
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    return binary


@pytest.fixture
def make_redis(_redis_binary: str) -> Iterator[Callable[[], RedisServer]]:
    """Start Redis servers of the test's own (to stop and start); removed after."""
    made: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(_redis_binary, Path(tempfile.mkdtemp(prefix="cmcsync-redis-")))
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.kill()
            shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def _shared_redis(_redis_binary: str) -> Iterator[RedisServer]:
    server = RedisServer(_redis_binary, Path(tempfile.mkdtemp(prefix="cmcsync-redis-")))
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_server(_shared_redis: RedisServer) -> RedisServer:
    """The session's Redis server; tests keep apart by their key prefix."""
    return _shared_redis
