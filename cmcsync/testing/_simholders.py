"""Metric-driven feeds: token and pool rolling metrics, holder metrics, wallet updates.

Holder sources cycle through every ``tp`` of their channel. The ``holder_count``,
``tag_pnl`` and ``tag_balance`` holder metrics and the ``native_balance`` and ``pnl_stats``
wallet updates carry invented keys (``hc``, ``devpnl``, ``nb``, ``rpnl``...): CMC does not
document theirs, and clients must parse unknown keys generically anyway.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from cmcsync.testing._simprotocol import sub_key
from cmcsync.testing._simworld import (
    Delivery,
    Kind,
    Source,
    World,
    address_for,
    block_height,
    digest,
    uniform_delay,
)

__all__ = ["KINDS"]

_WINDOWS = ("1m", "5m", "1h", "4h", "24h")
_WINDOW_MINUTES = {"1m": 1, "5m": 5, "1h": 60, "4h": 240, "24h": 1440}
_POOL_WINDOWS = ("5m", "1h", "4h", "24h")
_HOLDER_TYPES = ("tag_distribution", "holder_count", "top_share", "tag_pnl", "tag_balance")
_WALLET_TYPES = ("token_balance", "native_balance", "pnl_stats", "last_active", "position_time")


# -- metrics: onchain@token_metric, onchain@pool_metric -------------------------------------


def _window(rng: random.Random, minutes: int, price: float) -> dict[str, Any]:
    trades = int(rng.uniform(2, 30) * minutes)
    buys = int(trades * rng.uniform(0.35, 0.65))
    bvu, svu = rng.uniform(20, 400) * buys, rng.uniform(20, 400) * (trades - buys)
    traders = max(1, int(trades * rng.uniform(0.2, 0.6)))
    buyers = int(traders * rng.uniform(0.4, 0.7))
    return {
        "vn": (bvu + svu) / price,
        "vu": bvu + svu,
        "txs": trades,
        "bc": buys,
        "sc": trades - buys,
        "bvu": bvu,
        "svu": svu,
        "bvn": bvu / price,
        "svn": svu / price,
        "ut": traders,
        "but": buyers,
        "sut": traders - buyers,
    }


def _token_metric_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, address = source
    rng = world.rng(source)
    token = world.token(pid, address)
    st = world.state(source, lambda: {"p": token.price})
    st["p"] = world.walk(rng, st["p"], 0.003)
    windows = (
        _WINDOWS
        if rng.random() < 0.6
        else sorted(rng.sample(_WINDOWS, rng.randint(1, 4)), key=_WINDOWS.index)
    )
    sts = []
    for win in windows:
        item: dict[str, Any] = {"win": win}
        item.update(_window(rng, _WINDOW_MINUTES[win], st["p"]))
        item["pc"] = rng.gauss(0.0, 0.5 * math.sqrt(_WINDOW_MINUTES[win]))
        item["h"] = st["p"] * (1 + abs(rng.gauss(0, 0.01)))
        item["l"] = st["p"] * (1 - abs(rng.gauss(0, 0.01)))
        if win == "24h" and rng.random() < 0.15:  # as in a captured live frame
            for key in ("vn", "bvn", "svn", "but", "sut", "h", "l"):
                del item[key]
        sts.append(world.scrub(rng, item, ("bvn", "svn", "pc")))
    data = {"pid": pid, "a": address, "p": st["p"]}
    data["mc"] = None if rng.random() < 0.2 else st["p"] * token.supply
    data["lu"] = None if rng.random() < 0.2 else token.liquidity
    data["sts"] = sts
    return [(sub_key("onchain@token_metric", {"platform_id": pid, "address": address}), data)]


def _pool_metric_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, pool = source
    rng = world.rng(source)
    price = random.Random(f"{world.seed}|pool-price|{pid}|{pool}").uniform(0.001, 50)
    data: dict[str, Any] = {"pid": pid, "pa": pool}
    for win in _POOL_WINDOWS:
        full = _window(rng, _WINDOW_MINUTES[win], price)
        window = {key: full[key] for key in ("bvn", "bvu", "svn", "svu", "ut", "but", "sut")}
        data[win] = world.scrub(rng, window, ("bvn", "svn"))
    return [(sub_key("onchain@pool_metric", {"platform_id": pid, "pool_address": pool}), data)]


# -- holders: onchain@holders_metrics, onchain@holder_wallet_update --------------------------


def _next_type(world: World, source: Source, types: tuple[str, ...]) -> str:
    """Cycle through every ``tp``, starting at a seeded one."""
    st = world.state(source, lambda: {"turn": world.rng(source).randrange(len(types))})
    st["turn"] += 1
    turn: int = st["turn"]
    return types[turn % len(types)]


def _holders_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, address = source
    rng = world.rng(source)
    tp = _next_type(world, source, _HOLDER_TYPES)
    holders = int(random.Random(f"{world.seed}|holders|{pid}|{address}").uniform(300, 400_000))
    data: dict[str, Any] = {"pid": pid, "a": address, "tp": tp, "ts": world.clock.now_ms()}
    tags = ("dev", "k", "w", "bd", "s", "b", "sm")
    if tp == "tag_distribution":
        data["devp"] = round(rng.uniform(0, 20), 2)
        for tag in tags[1:]:
            data[f"{tag}hc"] = int(holders * rng.uniform(0.0005, 0.02))
    elif tp == "top_share":
        t10 = rng.uniform(3, 60)
        t50 = min(100.0, t10 * rng.uniform(1.1, 1.6))
        t100 = min(100.0, t50 * rng.uniform(1.02, 1.2))
        data.update(t10p=t10, t50p=t50, t100p=t100, t100ab=t100 / 100 * 1e9 * rng.uniform(0.5, 1))
    elif tp == "holder_count":  # invented keys: CMC does not document them
        data.update(hc=holders + rng.randint(-50, 50), hcc24h=rng.gauss(0, 2))
    elif tp == "tag_pnl":  # invented keys
        data.update({f"{tag}pnl": rng.gauss(0, 50_000) for tag in tags})
    else:  # tag_balance, invented keys
        data.update({f"{tag}b": 10 ** rng.uniform(3, 8) for tag in tags})
    optional = tuple(key for key in data if key not in ("pid", "a", "tp", "ts"))
    world.scrub(rng, data, optional)
    return [(sub_key("onchain@holders_metrics", {"platform_id": pid, "address": address}), data)]


def _wallet_emit(world: World, source: Source) -> list[Delivery]:
    _, pid, wallet = source
    rng = world.rng(source)
    tp = _next_type(world, source, _WALLET_TYPES)
    now = world.clock.now_ms()
    token = address_for(pid, digest(world.seed, "wallet-token", pid, wallet))
    data: dict[str, Any] = {"pid": pid, "wa": wallet, "tp": tp}
    if tp == "token_balance":
        data.update(a=token, b=10 ** rng.uniform(1, 8), hp=rng.uniform(0, 5))
        data["bh"] = block_height(pid, now)
    elif tp == "native_balance":  # invented keys
        native = world.quotes(pid)[0][2]
        balance = 10 ** rng.uniform(-2, 3)
        data.update(nb=balance, nbu=balance * native)
    elif tp == "pnl_stats":  # invented keys
        realized, unrealized = rng.gauss(0, 5_000), rng.gauss(0, 5_000)
        data.update(a=token, rpnl=realized, upnl=unrealized, tpnl=realized + unrealized)
    elif tp == "last_active":
        data["lat"] = now - rng.randint(0, 3_600_000)
    else:  # position_time
        opened = now - rng.randint(60_000, 30 * 86_400_000)
        cleared = None if rng.random() < 0.6 else rng.randint(opened, now)
        data.update(a=token, spot=opened, spct=cleared)
    data["ts"] = now
    optional = tuple(key for key in data if key not in ("pid", "wa", "tp", "ts", "a"))
    world.scrub(rng, data, optional)
    key = sub_key("onchain@holder_wallet_update", {"platform_id": pid, "wallet_address": wallet})
    return [(key, data)]


KINDS: Mapping[str, Kind] = {
    "token_metric": Kind(uniform_delay(2.0, 6.0), _token_metric_emit),
    "pool_metric": Kind(uniform_delay(2.0, 6.0), _pool_metric_emit),
    "holders": Kind(uniform_delay(3.0, 8.0), _holders_emit),
    "wallet": Kind(uniform_delay(3.0, 8.0), _wallet_emit),
}
