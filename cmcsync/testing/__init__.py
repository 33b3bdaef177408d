"""Test kit for cmcsync users and plugin authors.

- :class:`Simulator`: a local WebSocket server that speaks the CMC streaming protocol on
  127.0.0.1, with realistic data for every channel and faults a test can trigger.
- :class:`EventRecorder`: a plugin that records every hook call it receives.
- A pytest plugin (``cmcsync.testing.pytest_plugin``, loaded automatically through the
  ``pytest11`` entry point) with fixtures built on both.
"""

from __future__ import annotations

from cmcsync.testing._recorder import EventRecorder
from cmcsync.testing._simulator import SimConnection, Simulator

__all__ = ["EventRecorder", "SimConnection", "Simulator"]
