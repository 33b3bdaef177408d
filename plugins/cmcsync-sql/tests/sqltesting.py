"""What the cmcsync-sql tests share: the simulator feed, and PostgreSQL servers to start.

PostgreSQL runs from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``) on
127.0.0.1 with a free port and a temporary directory; as root it runs as the ``postgres``
user, since the server refuses to run as root.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cmcsync.testing import FEED, free_port, stream_feed

KEY = "test-key"
#: The channels of the shared feed.
CHANNELS = tuple(channel for channel, _ in FEED)
stream = stream_feed


def postgres_bin() -> Path | None:
    """Where ``pg_ctl`` and ``initdb`` are: on the PATH, or Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in Path(path).parts[-3].split(".") if n.isdigit())


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 with its own cluster directory.

    :param bindir: where ``pg_ctl`` is.
    :param datadir: the cluster (a copy of the session's ``initdb``).
    :param run_as: the command prefix that runs a program as the cluster's owner.
    """

    def __init__(self, bindir: Path, datadir: Path, run_as: Sequence[str]) -> None:
        self.bindir = bindir
        self.datadir = datadir
        self.run_as = list(run_as)
        self.port = free_port()

    @property
    def url(self) -> str:
        """The ``postgres`` database as the superuser ``cmcsync`` (trust authentication)."""
        return f"postgresql://cmcsync@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.datadir.parent} -F "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=20"
        )
        log = str(self.datadir.parent / "log")
        self._pg_ctl("start", "-w", "-t", "30", "-o", options, "-l", log)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._pg_ctl("stop", "-w", "-t", "30", "-m", mode)

    def _pg_ctl(self, *args: str) -> None:
        command = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.datadir.parent / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stderr.strip()}\n{tail}")
