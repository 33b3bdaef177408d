"""pytest fixtures for testing cmcsync plugins against the local simulator.

Loaded automatically (``pytest11`` entry point ``cmcsync``) once cmcsync is installed. A plugin
test needs a few lines::

    def test_my_plugin(cmcsync_make_client, cmcsync_recorder):
        plugin = MyPlugin()
        cmcsync_make_client(plugin)          # started; subscribes what the plugin declares
        cmcsync_recorder.wait_for_events(5)
        assert plugin.seen

Fixtures:

- ``cmcsync_simulator``: a started :class:`cmcsync.testing.Simulator` on 127.0.0.1 running at
  100 times real speed and accepting the key ``"test-key"``; stopped after the test.
- ``cmcsync_recorder``: an :class:`cmcsync.testing.EventRecorder`.
- ``cmcsync_make_client``: ``make(*plugins, **kwargs)`` builds and starts a
  :class:`cmcsync.Client` on the simulator with the recorder and ``plugins`` registered and
  no installed plugins loaded; every client it made is closed after the test.
- ``cmcsync_client``: ``cmcsync_make_client()`` with no other plugin.
- ``cmcsync_no_leaked_threads``: fails the test if a ``cmcsync-*`` thread started during it
  is still alive at the end (after a grace period for threads that are stopping). Use it
  with ``pytestmark = pytest.mark.usefixtures("cmcsync_no_leaked_threads")`` or from an
  autouse fixture in ``conftest.py``.

Nothing heavy is imported until a fixture is used, so the plugin costs nothing to test runs
that do not use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cmcsync.client import Client
    from cmcsync.testing import EventRecorder, Simulator

__all__ = [
    "TEST_API_KEY",
    "cmcsync_client",
    "cmcsync_make_client",
    "cmcsync_no_leaked_threads",
    "cmcsync_recorder",
    "cmcsync_simulator",
    "cmcsync_threads",
]

#: The API key the simulator fixture accepts and the client fixtures send.
TEST_API_KEY = "test-key"


def cmcsync_threads() -> list[threading.Thread]:
    """The live threads whose names start with ``cmcsync-``."""
    return [t for t in threading.enumerate() if t.name.startswith("cmcsync-")]


@pytest.fixture
def cmcsync_no_leaked_threads() -> Iterator[None]:
    """Fail the test if a ``cmcsync-*`` thread it started outlives it by more than 5 s."""
    before = set(cmcsync_threads())
    yield
    deadline = time.monotonic() + 5.0
    leaked = [t for t in cmcsync_threads() if t not in before]
    while leaked and time.monotonic() < deadline:
        leaked[0].join(max(0.0, deadline - time.monotonic()))
        leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"cmcsync threads outlived the test: {sorted(t.name for t in leaked)}"


@pytest.fixture
def cmcsync_simulator() -> Iterator[Simulator]:
    """A started simulator on 127.0.0.1 at 100x speed, accepting ``TEST_API_KEY``."""
    from cmcsync.testing import Simulator

    with Simulator(api_keys=(TEST_API_KEY,), speed=100) as simulator:
        yield simulator


@pytest.fixture
def cmcsync_recorder() -> EventRecorder:
    """A plugin that records every hook call; the client fixtures register it."""
    from cmcsync.testing import EventRecorder

    return EventRecorder()


@pytest.fixture
def cmcsync_make_client(
    cmcsync_simulator: Simulator, cmcsync_recorder: EventRecorder
) -> Iterator[Callable[..., Client]]:
    """A factory of started clients on the simulator; all are closed after the test.

    ``make(*plugins, **kwargs)``: ``plugins`` are registered after the recorder, so the
    subscriptions they declare are made; ``kwargs`` go to :class:`cmcsync.Client`.
    """
    import cmcsync

    made: list[Client] = []

    def make(*plugins: object, **kwargs: Any) -> Client:
        client = cmcsync.Client(
            api_key=TEST_API_KEY,
            url=cmcsync_simulator.url,
            autoload=False,
            plugins=[cmcsync_recorder, *plugins],
            **kwargs,
        )
        made.append(client)
        client.start()
        return client

    try:
        yield make
    finally:
        for client in reversed(made):
            client.close()


@pytest.fixture
def cmcsync_client(cmcsync_make_client: Callable[..., Client]) -> Client:
    """A started client on the simulator with the recorder registered; closed after the test."""
    return cmcsync_make_client()
