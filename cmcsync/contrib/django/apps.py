"""The Django app: reads ``settings.CMCSYNC`` and starts the client once per serving process."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from django.apps import AppConfig  # type: ignore[import-untyped]
from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import request_started  # type: ignore[import-untyped]

from cmcsync.contrib._launch import Action, Decision, decide, detect_launch
from cmcsync.contrib._runtime import Role, Runtime
from cmcsync.contrib._settings import IntegrationSettings, build_client, lock_path_of, to_bool
from cmcsync.exceptions import ConfigError

__all__ = ["CmcsyncConfig", "load_settings", "name_of"]

log = logging.getLogger("cmcsync.contrib.django")


def name_of(key: str) -> str:
    """How a setting is spelt in ``settings.py``: ``CMCSYNC['URL']``."""
    return f"CMCSYNC[{key!r}]"


def raw_settings() -> dict[str, Any]:
    """The ``CMCSYNC`` dict of the project's settings (empty when it has none).

    :raises ConfigError: when ``CMCSYNC`` is not a dict.
    """
    raw = getattr(django_settings, "CMCSYNC", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"settings.CMCSYNC must be a dict like {{'URL': ..., 'SUBSCRIPTIONS': [...]}}, "
            f"got {type(raw).__name__}",
            param="CMCSYNC",
        )
    return raw


def load_settings() -> IntegrationSettings:
    """Validate ``settings.CMCSYNC``.

    :raises ConfigError: naming the setting that is wrong.
    """
    return IntegrationSettings.from_mapping(raw_settings(), name_of=name_of)


class CmcsyncConfig(AppConfig):  # type: ignore[misc]
    """The ``cmcsync.contrib.django`` app (label ``cmcsync``)."""

    name = "cmcsync.contrib.django"
    label = "cmcsync"
    verbose_name = "cmcsync (CoinMarketCap streaming)"

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        #: The runtime of this process, ``None`` until started (or deferred to a fork).
        self.runtime: Runtime | None = None
        #: What the start-once rules decided in :meth:`ready`, and why.
        self.decision: Decision | None = None
        self._start_lock = threading.Lock()

    def ready(self) -> None:
        """Apply the start-once rules; start the client, defer it to the workers, or not."""
        from cmcsync.contrib.django import checks  # noqa: F401 - registers the system check

        try:
            autostart = to_bool(raw_settings().get("AUTOSTART", True), name_of("AUTOSTART"))
        except ConfigError:
            autostart = False  # the system check reports it; a broken setting starts nothing
        self.decision = decide(detect_launch(), autostart=autostart)
        log.debug("cmcsync: %s (%s)", self.decision.action.value, self.decision.reason)
        if self.decision.action is Action.START:
            self._start_or_raise()
        elif self.decision.action is Action.AFTER_FORK:
            try:
                self.runtime = self.new_runtime()
            except ConfigError as exc:
                raise ImproperlyConfigured(f"cmcsync: {exc}") from exc
            self.runtime.defer_until_fork()
            request_started.connect(self._on_request, dispatch_uid="cmcsync-first-request")

    def new_runtime(self, *, leader: bool | None = None) -> Runtime:
        """Build this process's runtime from the settings, replacing a closed or idle one.

        :param leader: overrides ``CMCSYNC['LEADER']`` when not ``None``.
        :returns: the new runtime, not started.
        :raises ConfigError: for invalid settings, or when a client already runs here.
        """
        from cmcsync.contrib.django.signals import SignalBridge

        with self._start_lock:
            current = self.runtime
            if current is not None and current.role not in (Role.IDLE, Role.CLOSED):
                raise ConfigError(
                    f"a cmcsync client already runs in this process ({current.role.value}); "
                    "stop it first",
                    param="CMCSYNC",
                )
            settings = load_settings()
            use_leader = settings.leader if leader is None else leader
            make = functools.partial(build_client, settings, [SignalBridge()], name_of=name_of)
            self.runtime = Runtime(make, lock_path=lock_path_of(settings) if use_leader else None)
            return self.runtime

    def start_runtime(self) -> Runtime:
        """Start the runtime, building it first if needed (:func:`cmcsync.contrib.django.start`)."""
        runtime = self.runtime
        if runtime is None or runtime.role is Role.CLOSED:
            runtime = self.new_runtime()
        return runtime.start()

    def stop_runtime(self, timeout: float | None = None) -> None:
        """Close the runtime; see :func:`cmcsync.contrib.django.stop`."""
        runtime = self.runtime
        if runtime is not None:
            runtime.close(timeout)
        request_started.disconnect(dispatch_uid="cmcsync-first-request")

    def _start_or_raise(self) -> None:
        try:
            self.start_runtime()
        except ConfigError as exc:
            raise ImproperlyConfigured(
                f"cmcsync: {exc} (set CMCSYNC['AUTOSTART'] = False to start it yourself)"
            ) from exc

    def _on_request(self, sender: object, **kwargs: object) -> None:
        runtime = self.runtime
        if runtime is None or runtime.role is not Role.WAITING:
            return
        try:
            runtime.ensure_started()
        except Exception:
            log.exception("cmcsync: could not start the client")
