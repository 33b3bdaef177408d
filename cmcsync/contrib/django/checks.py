"""The system check of ``settings.CMCSYNC``, run by ``manage.py check`` and before commands."""

from __future__ import annotations

from typing import Any

from django.core import checks  # type: ignore[import-untyped]

from cmcsync.contrib._settings import import_plugin
from cmcsync.contrib.django.apps import load_settings, name_of
from cmcsync.exceptions import ConfigError

__all__ = ["check_settings"]


@checks.register("cmcsync")  # type: ignore[untyped-decorator]
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Report invalid ``CMCSYNC`` settings and plugins that cannot be imported.

    ``cmcsync.E001``: a setting is unknown or wrong. ``cmcsync.E002``: a ``PLUGINS`` entry
    cannot be imported or instantiated.
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        return [
            checks.Error(
                str(exc),
                hint="See the cmcsync Django how-to for the settings.",
                obj="settings.CMCSYNC",
                id="cmcsync.E001",
            )
        ]
    errors = []
    for spec in settings.plugins:
        try:
            import_plugin(spec, name_of("PLUGINS"))
        except ConfigError as exc:
            errors.append(checks.Error(str(exc), obj="settings.CMCSYNC", id="cmcsync.E002"))
    return errors
