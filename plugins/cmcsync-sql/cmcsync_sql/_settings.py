"""The settings of cmcsync-sql, from code, the environment, or a Django/Flask settings object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cmcsync import Backoff, ConfigError
from cmcsync.channels import CHANNELS, get_channel
from cmcsync.plugins import settings_from

__all__ = ["DEFAULT_URL", "ENV", "SqlSettings", "redact_url"]

#: Where events go when no URL is given: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///cmcsync.sqlite3"

#: Setting name (environment variable, Django setting or Flask config key) -> attribute.
ENV: Mapping[str, str] = {
    "CMCSYNC_SQL_URL": "url",
    "CMCSYNC_SQL_CHANNELS": "channels",
    "CMCSYNC_SQL_TABLE_PREFIX": "table_prefix",
    "CMCSYNC_SQL_BUFFER_SIZE": "buffer_size",
    "CMCSYNC_SQL_BATCH_SIZE": "batch_size",
    "CMCSYNC_SQL_CLOSE_TIMEOUT": "close_timeout",
}

# The attributes whose settings are numbers, and how a string for one is read.
_NUMBERS: Mapping[str, tuple[type[int] | type[float], str]] = {
    "buffer_size": (int, "a whole number"),
    "batch_size": (int, "a whole number"),
    "close_timeout": (float, "a number of seconds"),
}

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", url)


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"the database URL must be a non-empty string, not {type(value).__name__}",
            param="url",
        )
    url = value.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"{redact_url(url)!r} is not a database URL; use sqlite:///path.db or "
            "postgresql://user:password@host/dbname",
            param="url",
        )
    dialect = scheme.split("+", 1)[0]
    if dialect in ("postgresql", "postgres"):
        # The psycopg (3) driver is the one this package installs; SQLAlchemy's default
        # for a bare postgresql:// is psycopg2.
        driver = scheme.split("+", 1)[1] if "+" in scheme else "psycopg"
        return f"postgresql+{driver}://{rest}"
    if dialect != "sqlite":
        raise ConfigError(
            f"cmcsync-sql writes to SQLite and PostgreSQL, not {dialect!r}; "
            "use sqlite:///path.db or postgresql://user:password@host/dbname",
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


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{attribute.name} must be a whole number of at least 1, not {value!r}",
            param=attribute.name,
        )


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(
            f"{attribute.name} must be a number of seconds above 0, not {value!r}",
            param=attribute.name,
        )


def _prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _PREFIX.fullmatch(value):
        raise ConfigError(
            f"table_prefix must be letters, digits and underscores, not {value!r}",
            param="table_prefix",
        )


@attrs.frozen(kw_only=True)
class SqlSettings:
    """Where and how cmcsync-sql writes.

    :param url: a SQLAlchemy database URL: ``sqlite:///path.db`` or
        ``postgresql://user:password@host:5432/dbname`` (the psycopg 3 driver is used).
        Never shown with its password.
    :param channels: the channels to store, wire or short names; all ten by default.
    :param table_prefix: prepended to each table name (``cmcsync_kline``...).
    :param buffer_size: events held while the database is slow or down; past it, the
        oldest give way (counted and reported).
    :param batch_size: the most events written in one transaction.
    :param close_timeout: seconds the client's close waits for what is held to be written, at most
        half the client's ``timeouts.close`` (which bounds the whole close).
    :param backoff: the waits between attempts while the database is down.
    :raises ConfigError: naming the setting, for a value that cannot be used.
    """

    url: str = attrs.field(default=DEFAULT_URL, converter=_url, repr=redact_url)
    channels: tuple[str, ...] = attrs.field(default=None, converter=_channels)
    table_prefix: str = attrs.field(default="cmcsync_", validator=_prefix)
    buffer_size: int = attrs.field(default=100_000, validator=_positive_int)
    batch_size: int = attrs.field(default=1000, validator=_positive_int)
    close_timeout: float = attrs.field(default=3.0, validator=_positive)
    backoff: Backoff = attrs.field(factory=lambda: Backoff(base=0.25, cap=10.0))

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | object, *, environ: Mapping[str, str] | None = None
    ) -> SqlSettings:
        """Read the ``CMCSYNC_SQL_*`` names from a settings object, then from the environment.

        :param settings: a mapping (Flask's ``app.config``, Django's ``CMCSYNC`` dict) or an
            object with attributes (Django's ``django.conf.settings``). A name is looked up
            in full (``CMCSYNC_SQL_URL``), then without ``CMCSYNC_`` (``SQL_URL``); values
            may be strings or Python values (a list of channels, an int).
        :param environ: where to look for the names ``settings`` lacks; ``os.environ`` by
            default, ``{}`` for nowhere.
        :raises ConfigError: naming the setting whose value cannot be used.
        """
        return settings_from(cls, ENV, settings, environ=environ, numbers=_NUMBERS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SqlSettings:
        """Read the ``CMCSYNC_SQL_*`` environment variables.

        :raises ConfigError: naming the variable whose value cannot be used.
        """
        return cls.from_settings({}, environ=environ)
