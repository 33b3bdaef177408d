"""Trade-driven feeds: crypto prices, swaps, aggregated prices, liquidity, klines, traders.

Swaps and liquidity events come from pools; one event is pushed on the subscriptions of both
tokens of its pool with the same ``tx`` and ``lgid`` (``iix`` on Solana), as CMC does. Kline
and unique-trader sources tick when the simulated clock crosses an interval boundary, with
``ot`` aligned to the interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from cmcsync.channels import interval_seconds
from cmcsync.testing._simprotocol import sub_key
from cmcsync.testing._simworld import (
    DUE,
    SOLANA,
    Delivery,
    Kind,
    Source,
    World,
    address_for,
    b58,
    block_height,
    digest,
    mean_delay,
)

__all__ = ["CRYPTOS", "KINDS"]

_CHANGES = ("p24h", "p7d", "p30d", "p60d", "p3m", "p1y", "pytd", "pall")

#: cid -> (price USD, circulating supply): levels of the ids CMC's docs list.
CRYPTOS: Mapping[int, tuple[float, float]] = {
    1: (80_000.0, 19_870_000.0),
    1027: (3_000.0, 120_700_000.0),
    1839: (600.0, 145_900_000.0),
    5426: (150.0, 480_000_000.0),
    52: (2.2, 57_000_000_000.0),
    74: (0.18, 148_000_000_000.0),
    2010: (0.7, 35_000_000_000.0),
    825: (1.0, 140_000_000_000.0),
    3408: (1.0, 60_000_000_000.0),
    6636: (6.0, 1_500_000_000.0),
}
_STABLE_CIDS = frozenset({825, 3408})


# -- market@crypto_latest_price -----------------------------------------------------------


def _price_state(world: World, cid: int) -> dict[str, Any]:
    rng = random.Random(f"cid|{cid}")  # the level depends on the id only, not the seed
    price, supply = CRYPTOS.get(cid, (10 ** rng.uniform(-5, 2), 10 ** rng.uniform(7, 11)))
    seeded = world.rng(("price", cid))
    if cid in _STABLE_CIDS:  # pegged: a fraction of a percent over any period
        changes = {key: seeded.uniform(-0.3, 0.3) for key in _CHANGES}
    else:
        changes = {key: seeded.uniform(-15, 25) for key in _CHANGES}
        changes["pall"] = seeded.uniform(50, 5e5) if cid != 1 else 131_301_167.42
    return {"p": price, "cs": supply, "turnover": seeded.uniform(0.01, 0.08), **changes}


def _price_delay(world: World, source: Source) -> float:
    cid = source[1]
    top = cid in CRYPTOS or cid < 5000  # stands in for "top 500 by rank"
    return (5.0 if top else 15.0) * world.rng(source).uniform(0.95, 1.05)


def _price_emit(world: World, source: Source) -> list[Delivery]:
    cid = source[1]
    rng = world.rng(source)
    st = world.state(source, lambda: _price_state(world, cid))
    if cid in _STABLE_CIDS:
        # Pulled back to the peg, so it never drifts away however long the run.
        st["p"] = 1.0 + (st["p"] - 1.0) * 0.9 + rng.gauss(0.0, 0.0002)
        for key in _CHANGES:
            st[key] = max(-0.5, min(0.5, st[key] + rng.gauss(0.0, 0.005)))
    else:
        st["p"] = world.walk(rng, st["p"], 0.0015)
        for key in _CHANGES[:-1]:
            st[key] += rng.gauss(0.0, 0.05)
    mc = st["p"] * st["cs"]
    data = {"cid": cid, "p": st["p"], "vu": mc * st["turnover"], "mc": mc, "cs": st["cs"]}
    data.update({key: st[key] for key in _CHANGES})
    data["fdv24h"] = st["p24h"]
    world.scrub(rng, data, ("vu", "mc", "cs", *_CHANGES, "fdv24h"))
    return [(sub_key("market@crypto_latest_price", {"crypto_ids": cid}), data)]


# -- pools: onchain@transaction, onchain@token_agg_event, onchain@liquidity_event ----------


def _pool_state(world: World, source: Source) -> dict[str, Any]:
    _, pid, _, token0, token1 = source
    t0, t1 = world.token(pid, token0), world.token(pid, token1)
    return {"p0": t0.price, "p1": t1.price, "lu0": t0.liquidity, "lu1": t1.liquidity}


def _tx_ids(rng: random.Random, pid: int) -> dict[str, Any]:
    """The hash of a made-up transaction, its maker and its dedupe index."""
    if pid == SOLANA:
        return {
            "tx": b58(rng.randbytes(64)),
            "ma": b58(rng.randbytes(32)),
            "iix": rng.randint(0, 12),
        }
    return {
        "tx": "0x" + rng.randbytes(32).hex(),
        "ma": "0x" + rng.randbytes(20).hex(),
        "lgid": rng.randint(0, 400),
    }


def _common(world: World, pid: int) -> dict[str, Any]:
    now = world.clock.now_ms()
    return {
        "pid": pid,
        "f": address_for(pid, digest("factory", pid)),
        "ts": now - now % 1000,  # on-chain events carry their block time, whole seconds
    }


def _swap_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, pool, token0, token1 = source
    rng = world.rng(source)
    t0, t1 = world.token(pid, token0), world.token(pid, token1)
    st = world.state(source, lambda: _pool_state(world, source))
    st["p0"] = world.walk(rng, st["p0"], t0.volatility)
    st["p1"] = world.walk(rng, st["p1"], t1.volatility)
    quotes = [quote for quote, _, _ in world.quotes(pid)]
    qi = 1 if token1 in quotes else 0  # which side is the quote token
    base_price, quote_price = (st["p0"], st["p1"]) if qi == 1 else (st["p1"], st["p0"])
    side = rng.choice(("buy", "sell"))
    usd = 10 ** rng.uniform(0.5, 4.5)
    excluded = rng.random() < 0.03
    swap = _common(world, pid)
    ts = swap.pop("ts")
    swap.update(bh=block_height(pid, ts), tp=side, pa=pool, t0a=token0, t1a=token1)
    swap.update(t0s=t0.symbol, t1s=t1.symbol, vu=usd, q=base_price / quote_price)
    swap.update(t0pu=st["p0"], t1pu=st["p1"])
    ids = _tx_ids(rng, pid)
    swap.update(tx=ids.pop("tx"), ts=ts, ma=ids.pop("ma"), ba=quotes[-1])
    swap.update(a0=usd / st["p0"], a1=usd / st["p1"], qi=qi)
    # Buying the base token means the quote token goes in.
    swap.update(tii=qi if side == "buy" else 1 - qi, **ids)
    swap.update(ex=excluded, txtp=rng.randint(1, 3) if excluded else 0)
    world.scrub(rng, swap, ("f", "bh", "vu", "q", "t0pu", "t1pu", "ma", "ba"))
    out: list[Delivery] = [
        (sub_key("onchain@transaction", {"platform_id": pid, "address": address}), swap)
        for address in (token0, token1)
    ]
    for address, price, lu in ((token0, st["p0"], "lu0"), (token1, st["p1"], "lu1")):
        st[lu] = world.walk(rng, st[lu], 0.002)
        agg = {"pid": pid, "a": address, "ap": price * (1 + rng.gauss(0, 0.0005)), "p": price}
        agg.update(lu=st[lu], ts=ts)
        world.scrub(rng, agg, ("ap", "p", "lu"))
        key = sub_key("onchain@token_agg_event", {"platform_id": pid, "address": address})
        out.append((key, agg))
    return out


def _liquidity_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, _, token0, token1 = source
    rng = world.rng(source)
    t0, t1 = world.token(pid, token0), world.token(pid, token1)
    usd = 10 ** rng.uniform(1, 5)
    kind = "migrate" if rng.random() < 0.02 else rng.choice(("add", "remove"))
    one_sided = rng.random() < 0.2
    event = _common(world, pid)
    event.update(tp=kind, t0s=t0.symbol, t1s=t1.symbol, t0a=token0, t1a=token1)
    event.update(a0=0 if one_sided else usd / 2 / t0.price, a1=usd / 2 / t1.price, vu=usd)
    event.update(_tx_ids(rng, pid))
    # Live frames have been seen without their log index.
    world.scrub(rng, event, ("f", "a0", "a1", "vu", "ma", "lgid"))
    return [
        (sub_key("onchain@liquidity_event", {"platform_id": pid, "address": address}), event)
        for address in (token0, token1)
    ]


# -- interval channels: onchain@kline, onchain@unique_trader --------------------------------


def _interval_state(world: World, source: Source) -> dict[str, Any]:
    """The source's state, with ``DUE`` set to the close of the interval running now."""
    st = world.state(source, dict)
    if DUE not in st:
        step = interval_seconds(source[3]) * 1000
        st[DUE] = world.clock.now_ms() // step * step + step
    return st


def _interval_delay(world: World, source: Source) -> float:
    due: int = _interval_state(world, source)[DUE]
    return max(0.0, (due - world.clock.now_ms()) / 1000.0)


def _closed_intervals(world: World, source: Source) -> list[int]:
    """The open times of the intervals that closed since the last tick (at most ten)."""
    step = interval_seconds(source[3]) * 1000
    st = _interval_state(world, source)
    now = world.clock.now_ms()
    opens: list[int] = []
    while st[DUE] <= now and len(opens) < 10:
        opens.append(st[DUE] - step)
        st[DUE] += step
    if st[DUE] <= now:  # fell far behind: resume at the next boundary
        st[DUE] = now // step * step + step
    return opens


def _kline_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, address, interval = source
    rng = world.rng(source)
    st = _interval_state(world, source)
    st.setdefault("c", world.token(pid, address).price)
    params = {"platform_id": pid, "address": address, "interval": interval}
    key = sub_key("onchain@kline", params)
    sigma = 0.002 * math.sqrt(interval_seconds(interval))
    out: list[Delivery] = []
    for ot in _closed_intervals(world, source):
        path = [st["c"]]
        for _ in range(6):
            path.append(world.walk(rng, path[-1], sigma / 2.5))
        st["c"] = path[-1]
        volume = world.token(pid, address).liquidity * rng.uniform(0.0005, 0.01)
        candle = {"o": path[0], "h": max(path), "l": min(path), "c": path[-1]}
        candle.update(vu=volume * interval_seconds(interval) / 60, ot=ot)
        out.append((key, world.scrub(rng, candle, ("vu",))))
    return out


def _unique_trader_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, address, interval = source
    rng = world.rng(source)
    params = {"platform_id": pid, "address": address, "interval": interval}
    key = sub_key("onchain@unique_trader", params)
    mean = 0.2 * interval_seconds(interval) ** 0.8
    return [
        (key, {"ut": int(rng.expovariate(1 / max(mean, 0.5))), "ot": ot})
        for ot in _closed_intervals(world, source)
    ]


KINDS: Mapping[str, Kind] = {
    "price": Kind(_price_delay, _price_emit),
    "swaps": Kind(mean_delay(3.0), _swap_emit),
    "liquidity": Kind(mean_delay(20.0), _liquidity_emit),
    "kline": Kind(_interval_delay, _kline_emit),
    "unique_trader": Kind(_interval_delay, _unique_trader_emit),
}
