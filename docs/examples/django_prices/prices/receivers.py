"""Receivers of the cmcsync signals: the prices go into the cache, for every process to read."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.dispatch import receiver

from cmcsync.contrib.django.signals import connected, disconnected, event_received
from cmcsync.events import CryptoLatestPrice

log = logging.getLogger("prices")

#: Cache key of one coin's latest price.
KEY = "prices:{}"


@receiver(event_received, sender=CryptoLatestPrice)
def store_price(sender: type, event: CryptoLatestPrice, **kwargs: Any) -> None:
    """Keep the latest price of a coin (called on the client's dispatcher thread)."""
    change = event.percent_change_24h
    cache.set(
        KEY.format(event.crypto_id),
        {
            "price": float(event.price),
            "change_24h": None if change is None else float(change),
            "ts": event.ts,
        },
        timeout=None,
    )


@receiver(connected)
def on_connected(sender: type, url: str, reconnect: bool, **kwargs: Any) -> None:
    """Log the connection."""
    log.info("streaming from %s%s", url, " again" if reconnect else "")


@receiver(disconnected)
def on_disconnected(sender: type, code: int | None, reason: str, **kwargs: Any) -> None:
    """Log a lost connection (the client reconnects by itself)."""
    log.warning("stream lost (%s %s)", code, reason)
