"""The settings both web integrations share, validated once, and the client they describe.

Django reads them from the ``CMCSYNC`` dict (``CMCSYNC = {"URL": ...}``), Flask from
``CMCSYNC_*`` config keys (``CMCSYNC_URL``); the names after the prefix are the same. Every
error names the setting as the user wrote it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cmcsync import _protocol
from cmcsync._connection import check_url
from cmcsync.channels import get_channel
from cmcsync.client import Client
from cmcsync.contrib._leader import default_lock_path
from cmcsync.exceptions import ConfigError
from cmcsync.hookspecs import hookimpl
from cmcsync.subscriptions import expand

__all__ = ["KEYS", "IntegrationSettings", "build_client", "import_plugin", "lock_path_of"]

#: Every setting, as named after the prefix.
KEYS = (
    "API_KEY",
    "URL",
    "SUBSCRIPTIONS",
    "PLUGINS",
    "AUTOSTART",
    "LEADER",
    "LOCK_PATH",
    "AUTOLOAD",
    "DECIMAL",
    "OPTIONS",
)

# Client arguments the settings above already set; OPTIONS may not repeat them.
_SET_BY_KEYS = frozenset({"api_key", "url", "plugins", "autoload", "decimal"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

NameOf = Callable[[str], str]


@attrs.frozen(kw_only=True)
class IntegrationSettings:
    """The validated settings of a web integration.

    :param api_key: the CMC key, or ``None`` to use ``CMC_PRO_API_KEY``. Never shown.
    :param url: the streaming endpoint.
    :param subscriptions: ``(channel, params)`` pairs subscribed when the client starts.
    :param plugins: plugin objects, or dotted paths imported when the client is built.
    :param autostart: start the client by the start-once rules; ``False``: never by itself.
    :param leader: leader mode: among the processes of this host, one runs the client.
    :param lock_path: the leader lock file; ``None``: one in the temporary directory, named
        after a hash of the URL and the key.
    :param autoload: load plugins installed under the ``cmcsync`` entry-point group.
    :param decimal: decode prices as :class:`decimal.Decimal`.
    :param options: more keyword arguments for :class:`cmcsync.Client` (``timeouts``,
        ``backoff``, ``dispatch``, ``sslopt``, ``proxy`` ...).
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    url: str = _protocol.DEFAULT_URL
    subscriptions: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    plugins: tuple[object, ...] = ()
    autostart: bool = True
    leader: bool = False
    lock_path: str | None = None
    autoload: bool = True
    decimal: bool = False
    options: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, name_of: NameOf, extra: Iterable[str] = ()
    ) -> IntegrationSettings:
        """Validate settings given by their names after the prefix.

        :param values: e.g. Django's ``CMCSYNC`` dict, or Flask's ``CMCSYNC_*`` keys with the
            prefix removed.
        :param name_of: how the user spells a setting, for messages (``"CMCSYNC['URL']"``).
        :param extra: more names the caller handles itself (allowed, ignored here).
        :returns: the settings.
        :raises ConfigError: naming the setting that is unknown or wrong.
        """
        allowed = (*KEYS, *extra)
        for key in values:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {name_of(close[0])}?" if close else ""
                raise ConfigError(
                    f"unknown cmcsync setting {name_of(str(key))}{hint} "
                    f"(the settings are {', '.join(name_of(k) for k in allowed)})",
                    param=str(key),
                )
        kwargs: dict[str, Any] = {}
        if values.get("API_KEY") is not None:
            key = values["API_KEY"]
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(
                    f"{name_of('API_KEY')} must be a non-empty string (or leave it out to "
                    f"use the {_protocol.API_KEY_ENV} environment variable)",
                    param="API_KEY",
                )
            kwargs["api_key"] = key.strip()
        options = _options(values.get("OPTIONS"), name_of)
        if values.get("URL") is not None:
            url = values["URL"]
            if not isinstance(url, str):
                raise ConfigError(f"{name_of('URL')} must be a string", param="URL")
            try:
                check_url(url, allow_insecure=bool(options.get("allow_insecure", False)))
            except ConfigError as exc:
                raise ConfigError(f"{name_of('URL')}: {exc}", param="URL") from exc
            kwargs["url"] = url
        kwargs["subscriptions"] = _subscriptions(values.get("SUBSCRIPTIONS"), name_of)
        kwargs["plugins"] = _plugins(values.get("PLUGINS"), name_of)
        for key in ("AUTOSTART", "LEADER", "AUTOLOAD", "DECIMAL"):
            if values.get(key) is not None:
                kwargs[key.lower()] = to_bool(values[key], name_of(key))
        if values.get("LOCK_PATH") is not None:
            path = values["LOCK_PATH"]
            if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
                raise ConfigError(f"{name_of('LOCK_PATH')} must be a file path", param="LOCK_PATH")
            kwargs["lock_path"] = os.path.abspath(os.fspath(path))
        kwargs["options"] = options
        return cls(**kwargs)


def to_bool(value: object, name: str) -> bool:
    """Read a yes/no setting: a bool, or one of ``1 true yes on`` / ``0 false no off``.

    :param value: the setting's value.
    :param name: the setting's name, for the message.
    :raises ConfigError: for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be True or False, got {value!r}", param=name)


def _options(raw: object, name_of: NameOf) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{name_of('OPTIONS')} must be a dict of cmcsync.Client keyword arguments",
            param="OPTIONS",
        )
    accepted = set(inspect.signature(Client).parameters) - _SET_BY_KEYS
    for name in raw:
        if name in _SET_BY_KEYS:
            raise ConfigError(
                f"{name_of('OPTIONS')} sets {name!r}; use {name_of(name.upper())} instead",
                param="OPTIONS",
            )
        if name not in accepted:
            raise ConfigError(
                f"{name_of('OPTIONS')} has {name!r}, which cmcsync.Client does not take "
                f"(it takes {', '.join(sorted(accepted))})",
                param="OPTIONS",
            )
    return dict(raw)


def _subscriptions(raw: object, name_of: NameOf) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    name = name_of("SUBSCRIPTIONS")
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Iterable):
        raise ConfigError(
            f"{name} must be a list of subscriptions, e.g. "
            '[{"channel": "market@crypto_latest_price", "crypto_ids": [1, 1027]}]',
            param="SUBSCRIPTIONS",
        )
    out = []
    for index, item in enumerate(raw):
        where = f"{name}[{index}]"
        if isinstance(item, Mapping):
            params = {str(k): v for k, v in item.items() if k != "channel"}
            channel = item.get("channel")
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], Mapping):
            channel, params = item[0], dict(item[1])
        else:
            raise ConfigError(
                f"{where} must be a dict with a 'channel' key and the channel's params, "
                f"or a (channel, params) pair; got {item!r}",
                param="SUBSCRIPTIONS",
            )
        if not isinstance(channel, str):
            raise ConfigError(f"{where} has no 'channel' name", param="SUBSCRIPTIONS")
        try:
            row = get_channel(channel)
            expand(row, params)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}", param="SUBSCRIPTIONS") from exc
        out.append((row.name, params))
    return tuple(out)


def _plugins(raw: object, name_of: NameOf) -> tuple[object, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise ConfigError(
            f"{name_of('PLUGINS')} must be a list of dotted paths or plugin objects",
            param="PLUGINS",
        )
    plugins = tuple(raw)
    for index, plugin in enumerate(plugins):
        if isinstance(plugin, str) and not _is_dotted(plugin):
            raise ConfigError(
                f"{name_of('PLUGINS')}[{index}] = {plugin!r} is not a dotted path "
                "like 'myapp.plugins.PriceWriter'",
                param="PLUGINS",
            )
    return plugins


def _is_dotted(path: str) -> bool:
    parts = path.split(".")
    return len(parts) >= 1 and all(part.isidentifier() for part in parts)


def import_plugin(spec: object, name: str = "PLUGINS") -> object:
    """Turn one ``PLUGINS`` entry into a plugin object.

    A dotted path names a module (registered as it is), a class (instantiated with no
    arguments) or any other object (registered as it is). Objects are returned unchanged,
    classes instantiated.

    :param spec: a dotted path or an object.
    :param name: the setting's name, for messages.
    :raises ConfigError: when the path cannot be imported, naming it.
    """
    target = _import_object(spec, name) if isinstance(spec, str) else spec
    if inspect.isclass(target):
        try:
            return target()
        except TypeError as exc:
            raise ConfigError(
                f"{name}: plugin class {spec!r} must be callable with no arguments: {exc}",
                param="PLUGINS",
            ) from exc
    return target


def _import_object(path: str, name: str) -> object:
    module_name, _, attr = path.rpartition(".")
    problem: str | None = None
    if module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problem = str(exc)
        else:
            if hasattr(module, attr):
                return getattr(module, attr)
            problem = f"module {module_name!r} has no attribute {attr!r}"
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise ConfigError(
            f"{name}: cannot import {path!r}: {problem or exc}", param="PLUGINS"
        ) from exc


class SettingsSubscriptions:
    """The plugin that asks the client for the subscriptions listed in the settings."""

    def __init__(self, subscriptions: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        self._subscriptions = list(subscriptions)

    def __repr__(self) -> str:
        return f"<SettingsSubscriptions {len(self._subscriptions)}>"

    @hookimpl
    def cmcsync_subscriptions(self) -> list[tuple[str, Mapping[str, Any]]]:
        """The ``SUBSCRIPTIONS`` setting."""
        return list(self._subscriptions)


def lock_path_of(settings: IntegrationSettings) -> str:
    """The leader lock file these settings use.

    :param settings: the integration's settings.
    :returns: ``LOCK_PATH``, or the default path for the URL and the key.
    """
    if settings.lock_path is not None:
        return settings.lock_path
    key = settings.api_key or os.environ.get(_protocol.API_KEY_ENV, "")
    return default_lock_path(settings.url, key.strip())


def build_client(
    settings: IntegrationSettings, extra_plugins: Iterable[object] = (), *, name_of: NameOf
) -> Client:
    """Build (not start) the client the settings describe.

    :param settings: the integration's settings.
    :param extra_plugins: plugins the integration adds (e.g. Django's signal bridge); they
        are registered after the ones from ``PLUGINS``.
    :param name_of: how the user spells a setting, for messages.
    :returns: a new client that subscribes to ``SUBSCRIPTIONS`` when started.
    :raises ConfigError: for a plugin that cannot be imported or registered, or a setting
        the client refuses (a missing key).
    """
    plugins = [import_plugin(p, name_of("PLUGINS")) for p in settings.plugins]
    plugins.extend(extra_plugins)
    if settings.subscriptions:
        plugins.append(SettingsSubscriptions(settings.subscriptions))
    return Client(
        api_key=settings.api_key,
        url=settings.url,
        decimal=settings.decimal,
        autoload=settings.autoload,
        plugins=plugins,
        **settings.options,
    )
