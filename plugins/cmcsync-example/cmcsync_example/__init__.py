"""cmcsync-example: price alerts, as a complete installable cmcsync plugin.

Installed, it works with no code in the host application: the ``cmcsync`` entry point loads
this module, whose hooks subscribe to the latest prices of the ids in
``CMCSYNC_EXAMPLE_IDS`` (default ``1,1027``: Bitcoin and Ethereum), keep the latest price per
id, and log every crossing of a threshold from ``CMCSYNC_EXAMPLE_THRESHOLDS``
(``ID=PRICE`` pairs, comma-separated, e.g. ``1=100000,1027=4000``).

An application that wants its own settings registers an instance instead::

    alerts = PriceAlerts(ids=[1], thresholds={1: [90_000, 100_000]})
    with cmcsync.Client(plugins=[alerts], autoload=False) as client:
        client.wait()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

import cmcsync
from cmcsync.events import CryptoLatestPrice

__all__ = [
    "CHANNEL",
    "DEFAULT_IDS",
    "IDS_ENV",
    "THRESHOLDS_ENV",
    "Crossing",
    "PriceAlerts",
    "cmcsync_on_crypto_latest_price",
    "cmcsync_on_gap",
    "cmcsync_subscriptions",
    "default_alerts",
]

logger = logging.getLogger("cmcsync_example")

CHANNEL = "market@crypto_latest_price"
IDS_ENV = "CMCSYNC_EXAMPLE_IDS"
THRESHOLDS_ENV = "CMCSYNC_EXAMPLE_THRESHOLDS"
DEFAULT_IDS = (1, 1027)


@attrs.frozen(kw_only=True)
class Crossing:
    """A price that went through a threshold between two consecutive quotes.

    :param crypto_id: the CMC id.
    :param threshold: the price crossed.
    :param direction: ``"up"`` or ``"down"``.
    :param previous: the price before.
    :param price: the price after.
    :param ts: the server time of the quote that crossed, epoch ms.
    """

    crypto_id: int
    threshold: float
    direction: str
    previous: float
    price: float
    ts: int


class PriceAlerts:
    """Keep the latest price per id and record each crossing of a threshold.

    :param ids: the CMC ids to watch; default: ``CMCSYNC_EXAMPLE_IDS`` or ``1,1027``.
    :param thresholds: prices to watch per id; default: ``CMCSYNC_EXAMPLE_THRESHOLDS``.
    :raises ValueError: naming the environment variable when its value cannot be read.
    """

    def __init__(
        self,
        ids: Iterable[int] | None = None,
        thresholds: Mapping[int, Iterable[float]] | None = None,
    ) -> None:
        self.ids: tuple[int, ...] = tuple(ids) if ids is not None else _ids_from_env()
        if not self.ids:
            raise ValueError("PriceAlerts needs at least one CMC id")
        source = thresholds if thresholds is not None else _thresholds_from_env()
        self.thresholds: dict[int, tuple[float, ...]] = {
            cid: tuple(sorted(float(t) for t in values)) for cid, values in source.items()
        }
        self._lock = threading.Lock()
        #: CMC id -> the latest price received.
        self.latest: dict[int, float] = {}
        #: Every crossing seen, oldest first.
        self.crossings: list[Crossing] = []

    @cmcsync.hookimpl
    def cmcsync_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
        return [(CHANNEL, {"crypto_ids": list(self.ids)})]

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        if event.crypto_id not in self.ids:
            return  # the host application's own subscription, not ours
        price = float(event.price)  # a Decimal when the client was built with decimal=True
        with self._lock:
            previous = self.latest.get(event.crypto_id)
            self.latest[event.crypto_id] = price
            if previous is None:
                return
            for threshold in self.thresholds.get(event.crypto_id, ()):
                if previous < threshold <= price:
                    direction = "up"
                elif previous > threshold >= price:
                    direction = "down"
                else:
                    continue
                crossing = Crossing(
                    crypto_id=event.crypto_id,
                    threshold=threshold,
                    direction=direction,
                    previous=previous,
                    price=price,
                    ts=event.ts,
                )
                self.crossings.append(crossing)
                logger.info(
                    "crypto %d crossed %s %s: %s -> %s",
                    crossing.crypto_id,
                    crossing.direction,
                    threshold,
                    previous,
                    price,
                )

    @cmcsync.hookimpl
    def cmcsync_on_gap(self, channel: str, params: Mapping[str, Any]) -> None:
        # Quotes were missed during a reconnect: a crossing inside the gap cannot be seen, so
        # start again from the next quote rather than compare with a stale price.
        if channel != CHANNEL:
            return
        crypto_id = params.get("crypto_ids")
        with self._lock:
            if isinstance(crypto_id, int):
                self.latest.pop(crypto_id, None)


_default: PriceAlerts | None = None
_default_lock = threading.Lock()


def default_alerts() -> PriceAlerts:
    """The instance behind this module's hooks, configured from the environment on first use."""
    global _default  # noqa: PLW0603 - one lazily built instance behind the module hooks
    with _default_lock:
        if _default is None:
            _default = PriceAlerts()
        return _default


# The entry point registers this module: its hooks delegate to the default instance, built
# when a client first asks for subscriptions rather than at import.


@cmcsync.hookimpl
def cmcsync_subscriptions() -> list[tuple[str, dict[str, Any]]]:
    return default_alerts().cmcsync_subscriptions()


@cmcsync.hookimpl
def cmcsync_on_crypto_latest_price(event: CryptoLatestPrice) -> None:
    default_alerts().cmcsync_on_crypto_latest_price(event)


@cmcsync.hookimpl
def cmcsync_on_gap(channel: str, params: Mapping[str, Any]) -> None:
    default_alerts().cmcsync_on_gap(channel, params)


def _ids_from_env() -> tuple[int, ...]:
    raw = os.environ.get(IDS_ENV, "").strip()
    if not raw:
        return DEFAULT_IDS
    try:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"{IDS_ENV} must be comma-separated CMC ids, e.g. 1,1027; got {raw!r}"
        ) from None


def _thresholds_from_env() -> dict[int, list[float]]:
    raw = os.environ.get(THRESHOLDS_ENV, "").strip()
    out: dict[int, list[float]] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        cid, sep, price = part.partition("=")
        try:
            if not sep:
                raise ValueError(part)
            out.setdefault(int(cid), []).append(float(price))
        except ValueError:
            raise ValueError(
                f"{THRESHOLDS_ENV} must be ID=PRICE pairs, e.g. 1=100000,1027=4000; got {part!r}"
            ) from None
    return out
