"""The example app: stores streamed prices and shows them."""

from __future__ import annotations

from django.apps import AppConfig


class PricesConfig(AppConfig):
    """Connects the receivers when Django starts."""

    name = "prices"

    def ready(self) -> None:
        """Import the receivers, which connect themselves with ``@receiver``."""
        from prices import receivers  # noqa: F401
