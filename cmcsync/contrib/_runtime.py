"""The client of a web application's process: started once, safe across fork, optionally led.

A :class:`Runtime` owns at most one :class:`cmcsync.Client` per process. In leader mode it
first takes a :class:`~cmcsync.contrib._leader.LeaderLock`: the process that gets it runs the
client, the others wait on a ``cmcsync-leader-wait`` thread that retries every
``poll_interval`` seconds and takes over when the leader dies.

Forks: a runtime inherited by a forked child drops what cannot cross a fork (the client,
whose threads are gone; the lock, which stays the parent's). A runtime *waiting for the fork*
(a pre-forking server's master, see :meth:`Runtime.defer_until_fork`) starts afresh in every
child; one that was running does not (a child forked for a side job should not stream), and
its :attr:`~Runtime.client` is ``None`` there until :meth:`~Runtime.start` is called again.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from cmcsync.client import Client, ClientState
from cmcsync.contrib._leader import LeaderLock, read_holder_pid
from cmcsync.exceptions import ClientClosedError, CmcsyncError, ConfigError

__all__ = ["Role", "Runtime", "idle_health"]

log = logging.getLogger("cmcsync.contrib")

#: Seconds between two attempts of a follower to take the leader lock.
DEFAULT_POLL_INTERVAL = 0.5
#: Seconds :func:`_close_all` gives each runtime at interpreter exit.
_EXIT_TIMEOUT = 2.0


class Role(str, enum.Enum):
    """What a :class:`Runtime` does in this process."""

    #: Not started in this process.
    IDLE = "idle"
    #: Waiting for a fork: starts in each child (a pre-forking server's master).
    WAITING = "waiting"
    #: Runs its own client; leader mode is off.
    STANDALONE = "standalone"
    #: Holds the leader lock and runs the client.
    LEADER = "leader"
    #: Another process holds the leader lock; retrying to take it over.
    FOLLOWER = "follower"
    #: Took the lock but could not build or start the client; the error says why.
    FAILED = "failed"
    #: Closed; final.
    CLOSED = "closed"


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()


class Runtime:
    """At most one client in this process, started once, optionally elected among processes.

    :param make_client: builds a new, not yet started client; called once per start.
    :param lock_path: the leader lock file; ``None`` turns leader mode off.
    :param poll_interval: seconds between a follower's attempts to take the lock.
    """

    def __init__(
        self,
        make_client: Callable[[], Client],
        *,
        lock_path: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if poll_interval <= 0:
            raise ConfigError(
                f"poll_interval must be > 0 seconds, got {poll_interval}", param="poll_interval"
            )
        self._make_client = make_client
        self._lock = LeaderLock(lock_path) if lock_path is not None else None
        self.poll_interval = poll_interval
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._mutex)
        self._client: Client | None = None
        self._thread: threading.Thread | None = None
        self._role = Role.IDLE
        self._error: BaseException | None = None
        self._inherited = False
        _live.add(self)

    def __repr__(self) -> str:
        return f"<cmcsync Runtime {self._role.value} pid={os.getpid()}>"

    # --- reading ------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """What this runtime does in this process."""
        return self._role

    @property
    def leader_mode(self) -> bool:
        """Whether the client runs in one elected process only."""
        return self._lock is not None

    @property
    def lock_path(self) -> str | None:
        """The leader lock file, in leader mode."""
        return self._lock.path if self._lock is not None else None

    @property
    def client(self) -> Client | None:
        """The client this process runs, or ``None`` (not started, a follower, closed)."""
        return self._client

    def require_client(self) -> Client:
        """The client this process runs.

        :returns: the client.
        :raises ClientClosedError: saying why there is none in this process: not started
            (the start-once rules, or ``AUTOSTART`` off), a follower in leader mode,
            inherited across a fork, failed or closed.
        """
        client = self._client
        if client is not None:
            return client
        role = self._role
        if self._inherited:
            why = (
                "the runtime was started in the parent process before fork(); the client "
                "does not cross a fork. Call start() in this process to run one here"
            )
        elif role is Role.FOLLOWER:
            why = (
                f"this process is a follower in leader mode: pid {self.leader_pid()} runs "
                "the client; read what it shares (a cache, a database) instead"
            )
        elif role in (Role.IDLE, Role.WAITING):
            why = "the client was not started in this process (start-once rules or AUTOSTART)"
        elif role is Role.FAILED:
            why = f"the client could not be started: {self._error}"
        else:
            why = "the runtime is closed"
        raise ClientClosedError(f"no cmcsync client in pid {os.getpid()}: {why}")

    @property
    def error(self) -> BaseException | None:
        """Why the client could not be built or started after a takeover, if it could not."""
        return self._error

    def leader_pid(self) -> int | None:
        """The pid of the process that last took the leader lock (``None`` without leader mode)."""
        if self._lock is None:
            return None
        return read_holder_pid(self._lock.path)

    def wait_role(self, roles: set[Role], timeout: float) -> bool:
        """Block until the role is one of ``roles``.

        :returns: whether it is, before ``timeout`` seconds passed.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._role not in roles:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Runtime:
        """Run the client in this process, or become a follower in leader mode.

        Returns at once: the client connects in the background. Calling it again does
        nothing.

        :returns: the runtime.
        :raises ClientClosedError: if the runtime was closed.
        :raises ConfigError: when the client cannot be built (a missing key, a bad plugin)
            or the lock file cannot be opened.
        """
        with self._changed:
            if self._role is Role.CLOSED:
                raise ClientClosedError("this cmcsync runtime is closed; make a new one")
            if self._role not in (Role.IDLE, Role.WAITING):
                return self
            self._inherited = False
            if self._lock is None:
                self._client = self._launch()
                self._set_role(Role.STANDALONE)
            elif self._lock.try_acquire():
                try:
                    self._client = self._launch()
                except BaseException:
                    self._lock.release()
                    raise
                self._set_role(Role.LEADER)
                log.info("cmcsync: pid %d is the leader (lock %s)", os.getpid(), self._lock.path)
            else:
                self._set_role(Role.FOLLOWER)
                log.info(
                    "cmcsync: pid %d follows the leader pid %s (lock %s)",
                    os.getpid(),
                    read_holder_pid(self._lock.path),
                    self._lock.path,
                )
                self._thread = threading.Thread(
                    target=self._follow, name="cmcsync-leader-wait", daemon=True
                )
                self._thread.start()
        return self

    def defer_until_fork(self) -> None:
        """Start in every child this process forks, and not in this process.

        For a pre-forking server's master. :meth:`ensure_started` still starts it here if
        this process turns out to serve requests after all.
        """
        with self._changed:
            if self._role is Role.IDLE:
                self._set_role(Role.WAITING)

    def ensure_started(self) -> None:
        """Start if waiting for a fork that did not come (called on each request: cheap)."""
        if self._role is Role.WAITING:
            self.start()

    def close(self, timeout: float | None = None) -> None:
        """Close the client, stop following, let go of the lock. Idempotent.

        :param timeout: seconds for the client's threads and the follower thread to stop;
            defaults to the client's own close timeout.
        """
        with self._changed:
            if self._role is Role.CLOSED:
                return
            self._set_role(Role.CLOSED)
            self._stop.set()
            client, self._client = self._client, None
            thread, self._thread = self._thread, None
        if client is not None:
            client.close(timeout)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._mutex:
            if self._lock is not None:
                self._lock.release()
        _live.discard(self)

    # --- health -------------------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """This process's view of the stream, for a health-check endpoint.

        Healthy (200): the client runs and is connected, or this process is a follower
        (another one streams). Otherwise 503: not started here, connecting, failed, closed.

        :returns: the HTTP status and a JSON-ready body: ``status``, ``pid``, ``role``,
            ``leader_pid``, ``state``, ``connected``, ``subscriptions`` (count by state),
            ``events``, ``reconnects``, ``last_close_code`` and, when something failed,
            ``error``. Never the key.
        """
        role, client, error = self._role, self._client, self._error
        body = _health_body(role, self.leader_pid())
        healthy = role is Role.FOLLOWER
        if client is not None:
            stats = client.stats()
            connected = client.connected
            body.update(
                state=stats["state"],
                connected=connected,
                subscriptions=stats["subscriptions"],
                events=stats["events"],
                reconnects=stats["reconnects"],
                last_close_code=stats["last_close_code"],
            )
            healthy = connected and client.state is ClientState.RUNNING
            if client.state is ClientState.FAILED:
                error = _fatal_error(client)
        if error is not None:
            body["error"] = f"{type(error).__name__}: {error}"
        if healthy:
            body["status"] = "ok"
        return (200 if healthy else 503), body

    # --- internals ----------------------------------------------------------------------

    def _set_role(self, role: Role) -> None:
        self._role = role
        self._changed.notify_all()

    def _launch(self) -> Client:
        client = self._make_client()
        try:
            client.start()
        except BaseException:
            client.close()
            raise
        return client

    def _follow(self) -> None:
        lock = self._lock
        assert lock is not None
        while not self._stop.wait(self.poll_interval):
            with self._changed:
                if self._stop.is_set():
                    return
                try:
                    acquired = lock.try_acquire()
                except CmcsyncError as exc:
                    self._fail(exc)
                    return
            if not acquired:
                continue
            # A leader that let go may be one of several processes stopping together (a
            # server shutting down): wait one more interval, so that a process about to exit
            # too does not connect only to close again. close() releases the lock.
            if self._stop.wait(self.poll_interval):
                return
            with self._changed:
                if self._stop.is_set():
                    return
                try:
                    self._client = self._launch()
                except Exception as exc:  # noqa: BLE001 - reported by health() and the log
                    lock.release()
                    self._fail(exc)
                    return
                self._set_role(Role.LEADER)
            log.info("cmcsync: pid %d took over as the leader (lock %s)", os.getpid(), lock.path)
            return

    def _fail(self, error: BaseException) -> None:
        log.error("cmcsync: could not take over the stream: %s", error)
        self._error = error
        self._set_role(Role.FAILED)

    def _reset_in_child(self) -> None:
        # Locks and events may have been held by a thread that does not exist here.
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._stop = threading.Event()
        role = self._role
        if role is Role.CLOSED:
            return
        self._client = None
        self._thread = None
        self._error = None
        if self._lock is not None:
            self._lock.forget_after_fork()
        self._inherited = role is not Role.WAITING and role is not Role.IDLE
        self._role = Role.IDLE
        if role is Role.WAITING:
            try:
                self.start()
            except Exception:
                log.exception("cmcsync: could not start the client after fork")


def idle_health() -> tuple[int, dict[str, Any]]:
    """The health answer of a process with no runtime: 503, role ``idle``."""
    return 503, _health_body(Role.IDLE, None)


def _health_body(role: Role, leader_pid: int | None) -> dict[str, Any]:
    return {
        "status": "unavailable",
        "pid": os.getpid(),
        "role": role.value,
        "leader_pid": leader_pid,
        "state": None,
        "connected": False,
        "subscriptions": {},
        "events": 0,
        "reconnects": 0,
        "last_close_code": None,
    }


def _fatal_error(client: Client) -> BaseException | None:
    try:
        client.wait(0)
    except CmcsyncError as exc:
        return exc
    return None


def _after_fork_in_child() -> None:
    for runtime in list(_live):
        runtime._reset_in_child()


def _close_all() -> None:
    for runtime in list(_live):
        try:
            runtime.close(_EXIT_TIMEOUT)
        except Exception:
            log.exception("cmcsync: closing at exit failed")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
