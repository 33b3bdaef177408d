"""Test kit for cmcsync users and plugin authors.

- :class:`Simulator`: a local WebSocket server that speaks the CMC streaming protocol on
  127.0.0.1, with realistic data for every channel and faults a test can trigger.
- :class:`EventRecorder`: a plugin that records every hook call it receives.
- :func:`stream_feed`: the simulator's full feed (:data:`FEED`) through your plugins, with
  what the client delivered as the reference; :func:`wait_until` and :func:`free_port`.
- A pytest plugin (``cmcsync.testing.pytest_plugin``, loaded automatically through the
  ``pytest11`` entry point) with fixtures built on both.
"""

from __future__ import annotations

from cmcsync.testing._feedrun import FEED, FEED_CHANNELS, free_port, stream_feed, wait_until
from cmcsync.testing._recorder import EventRecorder
from cmcsync.testing._simulator import SimConnection, Simulator

__all__ = [
    "FEED",
    "FEED_CHANNELS",
    "EventRecorder",
    "SimConnection",
    "Simulator",
    "free_port",
    "stream_feed",
    "wait_until",
]
