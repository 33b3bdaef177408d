"""Made-up but plausible data for the simulator's ten channels, wire keys as CMC sends them.

:class:`Feeds` is what the simulator asks: which *sources* a subscription depends on
(a crypto price, each pool of a token, a kline series...), when a source ticks next, and
what one tick pushes to which subscriptions. The simulator keeps a source running while any
subscription on any connection needs it.

- Time runs on a simulated market clock that starts at the wall clock and runs ``speed``
  times faster: every cadence is divided by ``speed`` and event times (``data.ts``, candle
  ``ot``, ``lat``...) come from that clock. (The envelope ``ts`` is the simulator's wall
  clock: it is the push time.)
- Cadences: ``market@crypto_latest_price`` every ~5 s for the ids CMC's docs list and ids
  below 5000 (standing in for the top 500 by rank), ~15 s for the others; swaps every ~3 s
  per pool and liquidity events every ~20 s (exponential gaps, event-driven); metrics and
  holder updates every 2-8 s; klines and unique traders at each interval close.
- Every value is reproducible from ``seed``: each source has its own generator, so a
  subscription's data depends only on the seed and on how often its source ticked.
- Optional keys are sometimes ``null`` or missing (``null_rate``); the identity keys
  (``cid`` and ``p`` of a price, ``pid``, addresses, ``tp``, ``tx``, ``ts``, ``ot``,
  ``win``) never are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cmcsync.testing import _simholders, _simtrades
from cmcsync.testing._simworld import Delivery, Kind, Source, World

__all__ = ["Delivery", "Feeds", "Source"]

_KINDS: Mapping[str, Kind] = {**_simtrades.KINDS, **_simholders.KINDS}

_Sources = Callable[[World, Mapping[str, Any]], list[Source]]


def _one(kind: str, *names: str) -> _Sources:
    """A subscription fed by one source, named by its params."""

    def sources(world: World, params: Mapping[str, Any]) -> list[Source]:
        return [(kind, *(params[name] for name in names))]

    return sources


def _pools(kind: str) -> _Sources:
    """A token subscription fed by each of the token's pools."""

    def sources(world: World, params: Mapping[str, Any]) -> list[Source]:
        pid, address = params["platform_id"], params["address"]
        return [(kind, pid, pool, t0, t1) for pool, t0, t1 in world.pools(pid, address)]

    return sources


# channel -> (the sources a subscription depends on, whether it gets a first push at once).
_CHANNELS: Mapping[str, tuple[_Sources, bool]] = {
    "market@crypto_latest_price": (_one("price", "crypto_ids"), True),
    "onchain@token_agg_event": (_pools("swaps"), False),
    "onchain@transaction": (_pools("swaps"), False),
    "onchain@liquidity_event": (_pools("liquidity"), False),
    "onchain@kline": (_one("kline", "platform_id", "address", "interval"), False),
    "onchain@token_metric": (_one("token_metric", "platform_id", "address"), True),
    "onchain@pool_metric": (_one("pool_metric", "platform_id", "pool_address"), True),
    "onchain@unique_trader": (
        _one("unique_trader", "platform_id", "address", "interval"),
        False,
    ),
    "onchain@holders_metrics": (_one("holders", "platform_id", "address"), True),
    "onchain@holder_wallet_update": (_one("wallet", "platform_id", "wallet_address"), True),
}


class Feeds(World):
    """The generator behind every data push of a simulator.

    :param seed: makes every value reproducible; any int or str.
    :param speed: divides every cadence; the simulated clock runs this much faster.
    :param null_rate: chance that an optional key is ``null`` or missing (half each).
    """

    def sources(self, channel: str, params: Mapping[str, Any]) -> list[Source]:
        """Return the sources one subscription depends on.

        :param channel: a channel of :data:`cmcsync.channels.CHANNELS`.
        :param params: the subscription's normalized params, list param as a scalar.
        """
        return _CHANNELS[channel][0](self, params)

    def snapshots(self, channel: str) -> bool:
        """Whether a new subscription of ``channel`` gets a first push right after its ack.

        CMC does not say whether a snapshot follows a subscribe. The simulator sends one on
        state channels (prices, metrics, holders) so a subscriber sees data at once; event
        channels wait for the next event and interval channels for the next interval close.
        """
        return _CHANNELS[channel][1]

    def delay(self, source: Source) -> float:
        """Return the real seconds until ``source`` ticks next."""
        return self.clock.real_seconds(_KINDS[source[0]].delay(self, source))

    def tick(self, source: Source) -> list[Delivery]:
        """Advance ``source`` by one tick and return its pushes."""
        return _KINDS[source[0]].emit(self, source)
