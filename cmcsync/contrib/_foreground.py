"""Running a web integration's client in the foreground: ``manage.py cmcsync_run`` and
``flask cmcsync run``, the dedicated streaming worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from cmcsync.client import ClientState
from cmcsync.contrib._runtime import Runtime
from cmcsync.exceptions import AuthError, GaveUpError

__all__ = ["exit_code_of", "run_foreground"]


def run_foreground(
    runtime: Runtime,
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run ``runtime`` in the calling thread until stopped: a dedicated streaming worker.

    Stops on SIGTERM or SIGINT (when called on the main thread), when ``stop`` is set, after
    ``duration`` seconds, or when the client fails; closes the runtime in every case.

    :param runtime: the runtime to start.
    :param duration: seconds to run; ``None`` runs until stopped.
    :param stop: an event that stops the run when set.
    :param say: where the progress lines go.
    :raises CmcsyncError: the fatal error that stopped the client (a rejected key).
    """
    stop = stop or threading.Event()
    restore = _install_stop_signals(stop)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        runtime.start()
        say(f"cmcsync: streaming in pid {os.getpid()} as {runtime.role.value}; stop with Ctrl-C")
        announced = runtime.role
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if stop.wait(0.2 if remaining is None else min(0.2, remaining)):
                break
            if runtime.role is not announced:
                announced = runtime.role
                say(f"cmcsync: pid {os.getpid()} is now {announced.value}")
            if runtime.error is not None:
                raise runtime.error
            client = runtime.client
            if client is not None and client.state is ClientState.FAILED:
                client.wait(0)
    finally:
        restore()
        runtime.close()
        say("cmcsync: stopped")


def exit_code_of(error: BaseException) -> int:
    """The ``cmcsync`` command's exit code for the error that stopped a client.

    :returns: 3 for a rejected key or plan, 4 when reconnecting gave up, 1 otherwise.
    """
    if isinstance(error, AuthError):
        return 3
    if isinstance(error, GaveUpError):
        return 4
    return 1


def _install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
