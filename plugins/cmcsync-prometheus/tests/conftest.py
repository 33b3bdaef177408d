"""Fixtures for cmcsync-prometheus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:
    import cmcsync_prometheus  # noqa: F401
except ImportError:  # running from a source tree without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def _no_leaked_threads(cmcsync_no_leaked_threads: None) -> None:
    """Every test ends with no cmcsync-* thread running, the endpoint's included."""


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins read CMCSYNC_PROMETHEUS_* by default: tests start from none."""
    for name in [name for name in os.environ if name.startswith("CMCSYNC_PROMETHEUS_")]:
        monkeypatch.delenv(name)
