"""cmcsync: a synchronous, thread-based client for the CoinMarketCap streaming API.

A background thread owns the socket and the keep-alive; a registry replays subscriptions on
every reconnect; pluggy hooks deliver decoded, typed, per-channel events to plugins in plain
blocking code. Start with :class:`Client`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from cmcsync._protocol import DEFAULT_URL
from cmcsync.channels import CHANNELS
from cmcsync.channels import Channel
from cmcsync.client import Client
from cmcsync.client import ClientState
from cmcsync.config import Backoff
from cmcsync.config import DispatchConfig
from cmcsync.config import Liveness
from cmcsync.config import Timeouts
from cmcsync.events import Event
from cmcsync.exceptions import AuthError
from cmcsync.exceptions import ClientClosedError
from cmcsync.exceptions import CmcsyncError
from cmcsync.exceptions import CmcsyncTimeoutError
from cmcsync.exceptions import ConfigError
from cmcsync.exceptions import ConnectionFailedError
from cmcsync.exceptions import DecodeError
from cmcsync.exceptions import GaveUpError
from cmcsync.exceptions import ProtocolError
from cmcsync.exceptions import ServerError
from cmcsync.exceptions import SubscriptionError
from cmcsync.hookspecs import hookimpl
from cmcsync.subscriptions import Subscription
from cmcsync.subscriptions import SubscriptionState

try:
    __version__ = _version("cmcsync")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CHANNELS",
    "DEFAULT_URL",
    "AuthError",
    "Backoff",
    "Channel",
    "Client",
    "ClientClosedError",
    "ClientState",
    "CmcsyncError",
    "CmcsyncTimeoutError",
    "ConfigError",
    "ConnectionFailedError",
    "DecodeError",
    "DispatchConfig",
    "Event",
    "GaveUpError",
    "Liveness",
    "ProtocolError",
    "ServerError",
    "Subscription",
    "SubscriptionError",
    "SubscriptionState",
    "Timeouts",
    "__version__",
    "hookimpl",
]
