"""Plugin managers: entry-point loading, the allow list, and validation at registration.

Every :class:`cmcsync.Client` builds its own manager with :func:`make_plugin_manager`; there
is no module-level manager, so two clients (or two tests) never share plugins.

Installed packages declare plugins in the ``cmcsync`` entry-point group::

    [options.entry_points]
    cmcsync =
        example = cmcsync_example

Two environment variables control what is loaded from entry points:

- ``CMCSYNC_DISABLE_PLUGIN_AUTOLOAD``: when set to anything non-empty, no entry point is
  loaded (plugins passed explicitly still are);
- ``CMCSYNC_PLUGINS=a,b``: only the entry points with these names are loaded; a listed name
  that no installed package provides is logged as a warning.

A plugin is checked when it is registered, not when its hook is first called: a function
named ``cmcsync_*`` that matches no hook, takes arguments its hook does not have, or lacks
the ``@cmcsync.hookimpl`` marker is refused at once with a :class:`~cmcsync.ConfigError`
naming the plugin and the hook, and the manager is left as it was.

A plugin package reads its own settings (``CMCSYNC_SQL_URL``...) with :func:`settings_from`,
from a Django or Flask settings object and the environment, the way cmcsync-sql,
cmcsync-redis and cmcsync-prometheus do.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import pluggy

from cmcsync import hookspecs
from cmcsync.exceptions import ConfigError

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "PluginInfo",
    "PluginManager",
    "make_plugin_manager",
    "plugin_info",
    "register",
    "settings_from",
]

logger = logging.getLogger("cmcsync.plugins")

#: The entry-point group installed plugins register under.
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
#: Set (non-empty) to load no plugin from entry points.
DISABLE_AUTOLOAD_ENV = "CMCSYNC_DISABLE_PLUGIN_AUTOLOAD"
#: Comma-separated entry-point names: load only these.
PLUGINS_ENV = "CMCSYNC_PLUGINS"

_PREFIX = "cmcsync_"
_SETTING_PREFIX = "CMCSYNC_"

_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class PluginInfo:
    """What ``cmcsync plugins`` shows about one registered plugin.

    :param name: the name the plugin is registered under (the entry-point name for an
        installed plugin).
    :param hooks: the hooks it implements, sorted.
    :param distribution: the installed package it came from, or ``None`` when it was
        registered in code.
    :param version: that package's version, or ``None``.
    """

    name: str
    hooks: tuple[str, ...]
    distribution: str | None = None
    version: str | None = None


class PluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that validates what it registers.

    :meth:`register` refuses a bad plugin with :class:`~cmcsync.ConfigError` instead of
    leaving it half registered, and every registration or removal bumps :attr:`generation`
    so the dispatcher knows when to rebuild its cached lists of implementations (pluggy
    has no change callback).
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        #: Bumped by every register and unregister; compared, never interpreted.
        self.generation = 0
        #: Plugin name -> the distribution whose entry point provided it.
        self.distributions: dict[str, importlib.metadata.Distribution] = {}

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register and validate a plugin; see :func:`cmcsync.plugins.register`.

        :raises ConfigError: naming the plugin and the offending hook.
        """
        registered = _register_validated(self, plugin, name)
        self.generation += 1
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin and all its hook implementations (see pluggy)."""
        removed = super().unregister(plugin=plugin, name=name)
        self.generation += 1
        return removed


def make_plugin_manager(*, autoload: bool = True, plugins: Iterable[object] = ()) -> PluginManager:
    """Build a new plugin manager with the cmcsync hooks, installed plugins and ``plugins``.

    :param autoload: load the plugins installed packages declare in the ``cmcsync``
        entry-point group; ``CMCSYNC_DISABLE_PLUGIN_AUTOLOAD`` turns this off too, and
        ``CMCSYNC_PLUGINS`` narrows it to the names it lists.
    :param plugins: plugin objects or modules to register after the installed ones, under
        their canonical names.
    :returns: a manager of its own; nothing is shared with any other call.
    :raises ConfigError: when a plugin fails validation or an entry point cannot be loaded.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    if autoload and not os.environ.get(DISABLE_AUTOLOAD_ENV):
        _load_entry_points(pm, _allow_list())
    for plugin in plugins:
        pm.register(plugin)
    return pm


def register(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` in ``pm`` and validate it against the hook specs.

    Refused, with ``pm`` left as it was:

    - a function named ``cmcsync_*`` without the ``@cmcsync.hookimpl`` marker (it would
      silently never be called);
    - an implementation of a hook that does not exist (a misspelt name), unless marked
      ``optionalhook=True``;
    - an implementation taking an argument its hook does not have;
    - a wrapper (``wrapper=True`` or ``hookwrapper=True``): cmcsync calls each plugin on its
      own to isolate failures, so there is no call chain to wrap;
    - a name already registered, or a plugin object registered twice.

    :param pm: a manager from :func:`make_plugin_manager` (any pluggy manager with the cmcsync
        specs works).
    :param plugin: an object or module with hook implementations.
    :param name: the name to register under; defaults to the module's ``__name__`` or a
        name derived from the object.
    :returns: the name the plugin was registered under.
    :raises ConfigError: naming the plugin and the offending hook.
    """
    if isinstance(pm, PluginManager):
        return pm.register(plugin, name)
    return _register_validated(pm, plugin, name)


def plugin_info(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin, sorted by name.

    :param pm: the manager to describe.
    :returns: one :class:`PluginInfo` per plugin, with the installed package and version for
        plugins loaded from entry points.
    """
    dists: dict[str, tuple[str, str]] = {}
    for plugin, facade in pm.list_plugin_distinfo():
        found = pm.get_name(plugin)
        if found is not None:
            dists[found] = (facade.project_name, facade.version)
    if isinstance(pm, PluginManager):
        for found, dist in pm.distributions.items():
            dists[found] = (dist.metadata["Name"], dist.version)
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name, e.g. a plugin the dispatcher switched off
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        dist_name, version = dists.get(name, (None, None))
        infos.append(
            PluginInfo(name=name, hooks=tuple(hooks), distribution=dist_name, version=version)
        )
    return sorted(infos, key=lambda info: info.name)


def settings_from(
    cls: Callable[..., _T],
    names: Mapping[str, str],
    settings: Mapping[str, Any] | object,
    *,
    environ: Mapping[str, str] | None = None,
    numbers: Mapping[str, tuple[Callable[[str], object], str]] | None = None,
    strip: bool = False,
) -> _T:
    """Build a plugin's settings from a host's settings object, then from the environment.

    Each setting name in ``names`` takes the first value found in:

    1. ``settings``, by key for a mapping (Flask's ``app.config``, Django's ``CMCSYNC``
       dict) and by attribute for any other object (``django.conf.settings``): the name in
       full (``CMCSYNC_SQL_URL``), then without ``CMCSYNC_`` (``SQL_URL``). ``None`` counts
       as not set.
    2. ``environ``, by the name in full. An empty string counts as not set.

    A setting found in neither is left out, so ``cls`` uses its default. A value is passed
    to ``cls`` as found (a string, a list, an int...), except that a string for an attribute
    in ``numbers`` is parsed first. For example::

        ENV = {"CMCSYNC_SQL_URL": "url", "CMCSYNC_SQL_BATCH_SIZE": "batch_size"}
        settings = settings_from(
            SqlSettings, ENV, app.config, numbers={"batch_size": (int, "a whole number")}
        )

    :param cls: the settings class, usually a frozen attrs class with keyword-only
        arguments and validators; called with the attributes found, as keyword arguments.
    :param names: setting name -> the attribute of ``cls`` it sets.
    :param settings: where to look first; ``{}`` to look only in the environment.
    :param environ: where to look for the names ``settings`` lacks; ``os.environ`` by
        default, ``{}`` for nowhere.
    :param numbers: attribute -> ``(parse, what)``, for attributes that take a number. A
        string value is replaced by ``parse(value)``; when ``parse`` raises
        :class:`ValueError`, the error says the setting must be ``what``:
        ``CMCSYNC_SQL_BATCH_SIZE must be a whole number, not 'lots'``.
    :param strip: remove the whitespace around every string value before it is parsed or
        passed on.
    :returns: what ``cls`` returns.
    :raises ConfigError: with ``param`` set to the setting name, for a number ``parse``
        refuses; and for a :class:`~cmcsync.ConfigError` raised by ``cls`` whose ``param``
        is an attribute in ``names``, re-raised with the setting name before its message
        (``CMCSYNC_SQL_URL: ...``). Any other error of ``cls`` is raised as it is.
    """
    env = os.environ if environ is None else environ
    parsers = numbers or {}
    values: dict[str, Any] = {}
    for name, attribute in names.items():
        value = _setting(settings, name)
        if value is None:
            value = env.get(name) or None
        if value is None:
            continue
        if strip and isinstance(value, str):
            value = value.strip()
        if attribute in parsers and isinstance(value, str):
            parse, what = parsers[attribute]
            try:
                value = parse(value)
            except ValueError:
                raise ConfigError(f"{name} must be {what}, not {value!r}", param=name) from None
        values[attribute] = value
    try:
        return cls(**values)
    except ConfigError as exc:
        setting = next((n for n, a in names.items() if a == exc.param), None)
        if setting is None:
            raise
        raise ConfigError(f"{setting}: {exc}", param=setting) from exc


def _setting(settings: Mapping[str, Any] | object, name: str) -> Any:
    # The full name (Flask's app.config, Django's settings module), then the name after the
    # prefix (the keys of Django's CMCSYNC dict, as cmcsync.contrib reads them).
    keys = (name, name.removeprefix(_SETTING_PREFIX))
    if isinstance(settings, Mapping):
        found = (settings.get(key) for key in keys)
    else:
        found = (getattr(settings, key, None) for key in keys)
    return next((value for value in found if value is not None), None)


def _allow_list() -> frozenset[str] | None:
    raw = os.environ.get(PLUGINS_ENV, "")
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    return names or None


def _load_entry_points(pm: PluginManager, allow: frozenset[str] | None) -> None:
    found: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.add(ep.name)
        if allow is not None and ep.name not in allow:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        dist = ep.dist
        source = f"entry point {ep.name!r} ({ep.value})"
        if dist is not None:
            source += f" of {dist.metadata['Name']} {dist.version}"
        try:
            plugin = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"cannot load the cmcsync plugin {source}: {type(exc).__name__}: {exc}; "
                f"uninstall it, or leave it out with {PLUGINS_ENV} or {DISABLE_AUTOLOAD_ENV}",
                param="plugins",
            ) from exc
        try:
            pm.register(plugin, name=ep.name)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {source})", param="plugins") from exc
        if dist is not None:
            pm.distributions[ep.name] = dist
        logger.debug("loaded cmcsync plugin %s", source)
    if allow is not None:
        for name in sorted(allow - found):
            logger.warning(
                "%s lists %r but no installed package provides a cmcsync plugin of that name",
                PLUGINS_ENV,
                name,
            )


def _register_validated(pm: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    plugin_name = name or _default_name(pm, plugin)
    if pm.is_blocked(plugin_name):
        raise ConfigError(
            f"plugin name {plugin_name!r} is blocked in this manager (a plugin switched off "
            "after failing repeatedly stays off until a new client is made)",
            param="plugins",
        )
    if pm.has_plugin(plugin_name):
        raise ConfigError(f"a plugin named {plugin_name!r} is already registered", param="plugins")
    if pm.is_registered(plugin):
        raise ConfigError(
            f"plugin {plugin!r} is already registered as {pm.get_name(plugin)!r}", param="plugins"
        )
    _check_markers(pm, plugin, plugin_name)
    try:
        registered = pluggy.PluginManager.register(pm, plugin, plugin_name)
    except pluggy.PluginValidationError as exc:
        _forget(pm, plugin, plugin_name)
        raise ConfigError(_one_line(str(exc)), param="plugins") from exc
    if registered is None:  # pragma: no cover - blocked names are refused above
        raise ConfigError(
            f"plugin name {plugin_name!r} is blocked in this manager", param="plugins"
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        culprit = pm.get_name(exc.plugin) or repr(exc.plugin)
        unknown = _unknown_hooks(pm, exc.plugin)
        _forget(pm, plugin, plugin_name)
        raise ConfigError(_unknown_message(culprit, unknown), param="plugins") from exc
    return registered


def _default_name(pm: pluggy.PluginManager, plugin: object) -> str:
    # pluggy names an object without __name__ by its id(), which means nothing in a log line;
    # the class name does, numbered when several instances are registered.
    if getattr(plugin, "__name__", None):
        return pm.get_canonical_name(plugin)
    base = type(plugin).__name__
    candidate, n = base, 1
    while pm.get_plugin(candidate) is not None or pm.is_blocked(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _check_markers(pm: pluggy.PluginManager, plugin: object, plugin_name: str) -> None:
    for attr in dir(plugin):
        if not attr.startswith(_PREFIX):
            continue
        value = getattr(plugin, attr, None)
        if not inspect.isroutine(value):
            continue
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            raise ConfigError(
                f"plugin {plugin_name!r}: {attr} is not marked with @cmcsync.hookimpl, "
                "so it would never be called; decorate it (or rename it if it is no hook)",
                param="plugins",
            )
        if opts.get("wrapper") or opts.get("hookwrapper"):
            raise ConfigError(
                f"plugin {plugin_name!r}: {attr} is declared as a hook wrapper; cmcsync calls "
                "each plugin on its own, so wrappers are not supported: use a plain "
                "@cmcsync.hookimpl",
                param="plugins",
            )


def _forget(pm: pluggy.PluginManager, plugin: object, plugin_name: str) -> None:
    # pluggy may have added some of the plugin's hooks before it failed; remove them all so
    # the manager is exactly as it was before the call.
    if pm.get_plugin(plugin_name) is plugin:
        pm.unregister(plugin, plugin_name)


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


def _unknown_message(plugin_name: str, unknown: list[str]) -> str:
    known = sorted(name for name in dir(hookspecs) if name.startswith(_PREFIX))
    parts = []
    for hook in unknown:
        text = f"{hook!r}"
        close = difflib.get_close_matches(hook, known, n=1)
        if close:
            text += f" (did you mean {close[0]!r}?)"
        parts.append(text)
    return f"plugin {plugin_name!r} implements unknown hook {', '.join(parts)}"


def _one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
