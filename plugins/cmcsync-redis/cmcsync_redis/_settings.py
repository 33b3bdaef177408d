"""The settings of cmcsync-redis, from code, the environment, or a Django/Flask settings object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from cmcsync import Backoff, ConfigError
from cmcsync.channels import CHANNELS, get_channel
from cmcsync.plugins import settings_from

__all__ = ["DEFAULT_URL", "ENV", "RedisSettings", "StreamLayout", "redact_url"]

#: The Redis server used when no URL is given.
DEFAULT_URL = "redis://127.0.0.1:6379/0"

#: ``"channel"``: one stream per channel; ``"subscription"``: one per subscription.
StreamLayout = Literal["channel", "subscription"]

#: Setting name (environment variable, Django setting or Flask config key) -> attribute.
ENV: Mapping[str, str] = {
    "CMCSYNC_REDIS_URL": "url",
    "CMCSYNC_REDIS_CHANNELS": "channels",
    "CMCSYNC_REDIS_STREAMS": "streams",
    "CMCSYNC_REDIS_PREFIX": "prefix",
    "CMCSYNC_REDIS_MAXLEN": "maxlen",
    "CMCSYNC_REDIS_BUFFER_SIZE": "buffer_size",
    "CMCSYNC_REDIS_BATCH_SIZE": "batch_size",
    "CMCSYNC_REDIS_CLOSE_TIMEOUT": "close_timeout",
}

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_SCHEMES = ("redis", "rediss", "unix")
# The attributes whose settings are numbers, and how a string for one is read.
_NUMBERS: Mapping[str, tuple[type[int] | type[float], str]] = {
    "maxlen": (int, "a whole number"),
    "buffer_size": (int, "a whole number"),
    "batch_size": (int, "a whole number"),
    "close_timeout": (float, "a number of seconds"),
}


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"the Redis URL must be a non-empty string, not {type(value).__name__}", param="url"
        )
    url = value.strip()
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ConfigError(
            f"{redact_url(url)!r} is not a Redis URL; use redis://[:password@]host:port/db, "
            "rediss:// for TLS or unix:///path/to/socket",
            param="url",
        )
    return url


def _channels(value: Any) -> tuple[str, ...]:
    if value is None:
        return tuple(CHANNELS)
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    names = [str(item).strip() for item in items if str(item).strip()]
    if not names or names == ["all"]:
        return tuple(CHANNELS)
    found: list[str] = []
    for name in names:
        try:
            row = get_channel(name)
        except ConfigError as exc:  # it lists the channels there are
            raise ConfigError(str(exc), param="channels") from None
        if row.name not in found:
            found.append(row.name)
    return tuple(found)


def _streams(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("channel", "subscription"):
        raise ConfigError(
            f"streams must be 'channel' (one stream per channel) or 'subscription' (one per "
            f"subscription), not {value!r}",
            param="streams",
        )


def _prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(
            f"prefix must be a non-empty key prefix without spaces, not {value!r}",
            param="prefix",
        )


def _count(minimum: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{attribute.name} must be a whole number of at least {minimum}, not {value!r}",
                param=attribute.name,
            )

    return check


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(
            f"{attribute.name} must be a number of seconds above 0, not {value!r}",
            param=attribute.name,
        )


@attrs.frozen(kw_only=True)
class RedisSettings:
    """Where and how cmcsync-redis publishes.

    :param url: the Redis server: ``redis://[:password@]host:port/db``, ``rediss://`` for
        TLS, ``unix:///path``. Never shown with its password.
    :param channels: the channels to publish, wire or short names; all ten by default.
    :param streams: ``"channel"`` for one stream per channel (``cmcsync:onchain@kline``),
        ``"subscription"`` for one per subscription
        (``cmcsync:onchain@kline:platform_id=14:interval=1m:address=0x...``).
    :param prefix: the first part of every stream key.
    :param maxlen: the length each stream is trimmed to (``XADD MAXLEN``); 0 never trims.
    :param approximate: trim with ``MAXLEN ~`` (whole macro nodes, much cheaper): a stream
        may then hold a little more than ``maxlen``.
    :param buffer_size: events held while Redis is slow or down; past it the oldest give
        way (counted and reported).
    :param batch_size: the most events sent in one ``MULTI``/``EXEC`` transaction.
    :param close_timeout: seconds the client's close waits for what is held to be sent, at most
        half the client's ``timeouts.close`` (which bounds the whole close).
    :param backoff: the waits between attempts while Redis is down.
    :raises ConfigError: naming the setting, for a value that cannot be used.
    """

    url: str = attrs.field(default=DEFAULT_URL, converter=_url, repr=redact_url)
    channels: tuple[str, ...] = attrs.field(default=None, converter=_channels)
    streams: StreamLayout = attrs.field(default="channel", validator=_streams)
    prefix: str = attrs.field(default="cmcsync", validator=_prefix)
    maxlen: int = attrs.field(default=100_000, validator=_count(0))
    approximate: bool = True
    buffer_size: int = attrs.field(default=100_000, validator=_count(1))
    batch_size: int = attrs.field(default=500, validator=_count(1))
    close_timeout: float = attrs.field(default=3.0, validator=_positive)
    backoff: Backoff = attrs.field(factory=lambda: Backoff(base=0.1, cap=5.0))

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> RedisSettings:
        """Read the ``CMCSYNC_REDIS_*`` names from a settings object, then the environment.

        :param settings: a mapping (Flask's ``app.config``, Django's ``CMCSYNC`` dict) or an
            object with attributes (Django's ``django.conf.settings``). A name is looked up
            in full (``CMCSYNC_REDIS_URL``), then without ``CMCSYNC_`` (``REDIS_URL``); values
            may be strings or Python values (a list of channels, an int).
        :param environ: where to look for the names ``settings`` lacks; ``os.environ`` by
            default, ``{}`` for nowhere.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return settings_from(cls, ENV, settings, environ=environ, numbers=_NUMBERS, strip=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisSettings:
        """Read the ``CMCSYNC_REDIS_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls.from_settings({}, environ=environ)
