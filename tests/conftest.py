"""Fixtures shared by the test modules: a simulator, a raw server, a client on the
simulator, and a thread check."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import cmcsync
from cmcsync.testing import EventRecorder, Simulator
from tests._rawserver import RawServer

KEY = "test-key"


def _cmcsync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cmcsync-")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test ends with no cmcsync-* thread left running."""
    before = set(_cmcsync_threads())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in _cmcsync_threads() if t not in before]
        if not leaked or time.monotonic() > deadline:
            break
        leaked[0].join(0.05)
    assert not leaked, f"threads outlived the test: {[t.name for t in leaked]}"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with fast feeds and a short ping interval."""
    with Simulator(api_keys=(KEY,), speed=200.0, seed=7, ping_interval_ms=10_000) as server:
        yield server


@pytest.fixture
def raw() -> Iterator[RawServer]:
    """A started :class:`tests._rawserver.RawServer`, closed after the test."""
    server = RawServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


def make_client(
    url: str, recorder: EventRecorder | None = None, **kwargs: object
) -> cmcsync.Client:
    """A client on the simulator with short timeouts and no installed plugins."""
    kwargs.setdefault("timeouts", cmcsync.Timeouts(ack=5.0, pong=0.5, close=2.0))
    kwargs.setdefault("backoff", cmcsync.Backoff(base=0.05, cap=0.2, long_base=0.1))
    plugins = [recorder] if recorder is not None else []
    return cmcsync.Client(
        api_key=KEY,
        url=url,
        autoload=False,
        plugins=plugins,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(sim: Simulator, recorder: EventRecorder) -> Iterator[cmcsync.Client]:
    c = make_client(sim.url, recorder)
    try:
        yield c
    finally:
        c.close()
