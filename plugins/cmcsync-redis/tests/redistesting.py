"""What the cmcsync-redis tests share: the simulator feed, and Redis servers to start.

``redis-server`` (Debian's ``redis-server`` package) runs on 127.0.0.1 with a free port, no
automatic snapshots and no append-only file, in a temporary directory of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cmcsync.testing import FEED, free_port, stream_feed, wait_until

KEY = "test-key"
#: The channels of the shared feed.
CHANNELS = tuple(channel for channel, _ in FEED)
stream = stream_feed


def redis_binary() -> str | None:
    """The ``redis-server`` program, if installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 that a test can stop and start again.

    Its data lives in ``directory``: :meth:`stop` with ``save=True`` writes it there and the
    next :meth:`start` loads it, as a server restarted by its operator would.

    :param binary: the ``redis-server`` program.
    :param directory: where the server keeps its files.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of the test's own, for looking at what the plugin wrote."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def start(self) -> None:
        """Start the server; returns once it answers PING."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--logfile", str(self.directory / "log"), "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        probe = self.client()
        try:
            wait_until(lambda: _answers(probe), timeout=10.0)
        finally:
            probe.close()

    def stop(self, *, save: bool = False) -> None:
        """Shut the server down, saving its data first if ``save``; returns once it exited."""
        process, self._process = self._process, None
        if process is None:
            return
        probe = self.client()
        try:
            probe.shutdown(save=save, nosave=not save)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        finally:
            probe.close()
        process.wait(timeout=10)

    def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


def _answers(probe: redis.Redis) -> bool:
    try:
        return bool(probe.ping())
    except redis.ConnectionError:
        return False
