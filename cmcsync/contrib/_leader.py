"""Leader election among the processes of one host: an exclusive ``flock`` on a file.

The process holding the lock runs the client; the others poll it. The kernel releases a
``flock`` when its holder dies, however it dies (SIGKILL included), so a follower's next poll
takes over. The holder writes its pid into the file, for people and health checks; the lock,
not the pid, is the truth.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile

from cmcsync.exceptions import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LeaderLock", "default_lock_path", "read_holder_pid"]


def default_lock_path(url: str, api_key: str) -> str:
    """The lock file for processes sharing a URL and a key, in the temporary directory.

    The name holds a hash of both, never the key itself, so two applications streaming from
    different keys (or servers) on one host each elect their own leader.

    :param url: the streaming endpoint.
    :param api_key: the CMC API key.
    :returns: an absolute path.
    """
    digest = hashlib.sha256(f"{url}\n{api_key}".encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"cmcsync-leader-{digest}.lock")


def read_holder_pid(path: str) -> int | None:
    """The pid the last leader wrote into the lock file.

    :param path: the lock file.
    :returns: the pid, or ``None`` when there is none (no leader yet, or it let go). It may
        name a process that has just died, until a follower takes over.
    """
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class LeaderLock:
    """An exclusive, non-blocking ``flock`` on ``path``: the holder is the leader.

    Not thread-safe; the runtime serialises calls.

    :param path: the lock file; created (mode 0600) if missing, never followed if a symlink.
    :raises ConfigError: where ``fcntl`` does not exist (Windows).
    """

    def __init__(self, path: str) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise ConfigError("leader mode needs fcntl.flock (POSIX systems)", param="leader")
        self.path = path
        self._fd: int | None = None
        self._held = False

    def __repr__(self) -> str:
        return f"<LeaderLock {self.path} {'held' if self._held else 'not held'}>"

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never blocks.

        :returns: whether this object holds the lock now.
        :raises ConfigError: when the lock file cannot be opened (naming the path).
        """
        if self._held:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._held = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:  # the pid is informative only; the lock is what counts
            pass
        return True

    def release(self) -> None:
        """Let go of the lock (if held) and close the file. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._held:
            self._held = False
            with contextlib.suppress(OSError):  # the pid is informative only
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the inherited descriptor without unlocking.

        A ``flock`` belongs to the open file, which the child shares with its parent:
        unlocking here would take the lock from the parent. Closing only the child's copy
        leaves the parent's lock as it was.
        """
        fd, self._fd = self._fd, None
        self._held = False
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            try:
                self._fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                raise ConfigError(
                    f"cannot open the leader lock file {self.path!r}: {exc.strerror}; "
                    "set LOCK_PATH to a file this process may create and write",
                    param="lock_path",
                ) from exc
        return self._fd
