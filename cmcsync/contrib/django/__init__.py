"""Django integration: the client runs inside your project and talks to it through signals.

Add the app and, optionally, a ``CMCSYNC`` dict to ``settings.py``::

    INSTALLED_APPS = [..., "cmcsync.contrib.django"]

    CMCSYNC = {
        "URL": "wss://pro-stream.coinmarketcap.com/v1",   # the default
        "SUBSCRIPTIONS": [{"channel": "market@crypto_latest_price", "crypto_ids": [1, 1027]}],
    }

and receive events with ``@receiver(event_received)`` (see :mod:`.signals`). The client starts
once per serving process (``runserver``'s child, each gunicorn or uWSGI worker), never during
``migrate``, ``shell``, ``check`` or ``test``; ``manage.py cmcsync_run`` runs it as a
dedicated worker instead. The settings, the start-once rules and the leader mode are
described in the Django how-to guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmcsync.exceptions import ConfigError

if TYPE_CHECKING:
    from cmcsync.client import Client
    from cmcsync.contrib._runtime import Runtime
    from cmcsync.contrib.django.apps import CmcsyncConfig

__all__ = ["get_client", "get_runtime", "start", "stop"]


def _app_config() -> CmcsyncConfig:
    from django.apps import apps  # type: ignore[import-untyped]

    try:
        config: CmcsyncConfig = apps.get_app_config("cmcsync")
    except LookupError:
        raise ConfigError(
            "the cmcsync Django app is not installed: add 'cmcsync.contrib.django' to "
            "INSTALLED_APPS",
            param="INSTALLED_APPS",
        ) from None
    return config


def get_runtime() -> Runtime | None:
    """The runtime of this process: the client, its role in leader mode, its health.

    :returns: ``None`` when the start-once rules did not start it and :func:`start` was
        not called.
    :raises ConfigError: if ``cmcsync.contrib.django`` is not in ``INSTALLED_APPS``.
    """
    return _app_config().runtime


def get_client() -> Client | None:
    """The client running in this process, e.g. to subscribe from a view.

    :returns: ``None`` when there is none here: not started (``AUTOSTART`` off, a management
        command, a dedicated ``cmcsync_run`` worker elsewhere) or a follower in leader mode.
    :raises ConfigError: if ``cmcsync.contrib.django`` is not in ``INSTALLED_APPS``.
    """
    runtime = _app_config().runtime
    return runtime.client if runtime is not None else None


def start() -> Runtime:
    """Start the client in this process now, whatever the start-once rules say.

    For a process the rules skip, or with ``AUTOSTART`` off (e.g. from a gunicorn
    ``post_fork`` hook). Does nothing if it runs already.

    :returns: the runtime.
    :raises ConfigError: for invalid ``CMCSYNC`` settings or a missing key.
    """
    return _app_config().start_runtime()


def stop(timeout: float | None = None) -> None:
    """Close the client of this process (and let go of the leader lock). Idempotent.

    :param timeout: seconds to wait for its threads.
    """
    _app_config().stop_runtime(timeout)
