"""The settings of cmcsync-prometheus, from code, the environment, or Django/Flask settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cmcsync import ConfigError
from cmcsync.plugins import settings_from

__all__ = ["DEFAULT_PORT", "ENV", "HTTP_THREAD", "LATENCY_BUCKETS", "PrometheusSettings"]

#: The name of the thread that serves the metrics.
HTTP_THREAD = "cmcsync-prometheus-http"

#: The port of the metrics endpoint when none is given.
DEFAULT_PORT = 9464

#: Upper bounds, in seconds, of the dispatch latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Setting name (environment variable, Django setting or Flask config key) -> attribute.
ENV: Mapping[str, str] = {
    "CMCSYNC_PROMETHEUS_PORT": "port",
    "CMCSYNC_PROMETHEUS_ADDR": "addr",
    "CMCSYNC_PROMETHEUS_BUCKETS": "buckets",
}

# The attributes whose settings are numbers, and how a string for one is read.
_NUMBERS: Mapping[str, tuple[type[int], str]] = {
    "port": (int, "a port number (0 picks a free one)"),
}


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(
            f"port must be 0-65535 (0 picks a free port), not {value!r}", param="port"
        )


def _addr(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"addr must be an address to listen on, such as 127.0.0.1, not {value!r}",
            param="addr",
        )


def _buckets(value: Any) -> tuple[float, ...]:
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    try:
        found = tuple(float(item) for item in items if str(item).strip())
    except (TypeError, ValueError):
        raise ConfigError(
            f"buckets must be seconds, e.g. 0.01,0.1,1; got {value!r}", param="buckets"
        ) from None
    if not found or list(found) != sorted(set(found)) or found[0] <= 0:
        raise ConfigError(
            f"buckets must be increasing positive seconds, e.g. 0.01,0.1,1; got {value!r}",
            param="buckets",
        )
    return found


@attrs.frozen(kw_only=True)
class PrometheusSettings:
    """Where the metrics are served, and how latency is bucketed.

    :param port: the TCP port of the endpoint; 0 picks a free one (see
        :attr:`PrometheusPlugin.port`).
    :param addr: the address to listen on; ``127.0.0.1`` keeps the endpoint on this
        machine, ``0.0.0.0`` opens it to the network.
    :param buckets: upper bounds, in seconds, of the dispatch latency histogram.
    :raises ConfigError: naming the setting, for a value that cannot be used.
    """

    port: int = attrs.field(default=DEFAULT_PORT, validator=_port)
    addr: str = attrs.field(default="127.0.0.1", validator=_addr)
    buckets: tuple[float, ...] = attrs.field(default=LATENCY_BUCKETS, converter=_buckets)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> PrometheusSettings:
        """Read the ``CMCSYNC_PROMETHEUS_*`` names from a settings object, then the environment.

        :param settings: a mapping (Flask's ``app.config``, Django's ``CMCSYNC`` dict) or an
            object with attributes (Django's ``django.conf.settings``). A name is looked up
            in full (``CMCSYNC_PROMETHEUS_PORT``), then without ``CMCSYNC_`` (``PROMETHEUS_PORT``);
            values may be strings or Python values.
        :param environ: where to look for the names ``settings`` lacks; ``os.environ`` by
            default, ``{}`` for nowhere.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return settings_from(cls, ENV, settings, environ=environ, numbers=_NUMBERS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrometheusSettings:
        """Read the ``CMCSYNC_PROMETHEUS_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls.from_settings({}, environ=environ)
