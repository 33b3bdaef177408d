"""The simulated market behind the simulator's feeds: its clock, tokens, pools and sources.

A *source* is a tuple whose first item names its kind (``("price", 1)``,
``("swaps", pid, pool, token0, token1)``...). Each source draws from its own generator,
seeded from the world's seed and the source, and keeps its own state, so what a source
produces depends only on the seed and on how many times it ticked.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cmcsync.testing._simprotocol import SubKey

__all__ = [
    "DUE",
    "SOLANA",
    "Delivery",
    "Kind",
    "Payload",
    "SimClock",
    "Source",
    "Token",
    "World",
    "address_for",
    "b58",
    "block_height",
    "digest",
    "mean_delay",
    "uniform_delay",
]

Source = tuple[Any, ...]
Payload = dict[str, Any]
#: One push: the subscription it is for and its ``data`` payload.
Delivery = tuple[SubKey, Payload]

#: CMC's platform id of Solana, whose addresses and signatures are base58.
SOLANA = 16
#: The state key of a clock-driven source's next tick, in simulated epoch ms.
DUE = "due"
_MIN_REAL_DELAY = 0.001
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# pid -> ((address, symbol, USD price) of the wrapped native token, of a USD stablecoin).
_QUOTES: Mapping[int, tuple[tuple[str, str, float], ...]] = {
    1: (
        ("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "WETH", 3_000.0),
        ("0xdac17f958d2ee523a2206206994597c13d831ec7", "USDT", 1.0),
    ),
    14: (
        ("0xbb4cdb9cbd36b01bd1cbaef60af814a3f6f0ee1c", "WBNB", 600.0),
        ("0x55d398326f99059ff775485246999027b3197955", "USDT", 1.0),
    ),
    16: (
        ("So11111111111111111111111111111111111111112", "SOL", 150.0),
        ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "USDC", 1.0),
    ),
    51: (
        ("0x82af49447d8a07e3bd95bd0d56f35241523fbab1", "WETH", 3_000.0),
        ("0xaf88d065e77c8cc2239327c5edb3a432268e5831", "USDC", 1.0),
    ),
    199: (
        ("0x4200000000000000000000000000000000000006", "WETH", 3_000.0),
        ("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", "USDC", 1.0),
    ),
}

# (pid, address) -> (symbol, USD price) of other tokens CMC's examples use.
_KNOWN: Mapping[tuple[int, str], tuple[str, float]] = {
    (1, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"): ("USDC", 1.0),
    (14, "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"): ("USDC", 1.0),
    (14, "0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82"): ("CAKE", 2.5),
}


def b58(data: bytes) -> str:
    """Encode bytes in Bitcoin's base58 alphabet, as Solana writes keys and signatures."""
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, remainder = divmod(number, 58)
        out = _B58[remainder] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def digest(*parts: object) -> bytes:
    """A stable 32-byte digest of ``parts`` (unlike ``hash``, the same in every process)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()


def address_for(pid: int, data: bytes) -> str:
    """An address in the platform's style: base58 on Solana, lower-case 0x hex elsewhere."""
    return b58(data[:32]) if pid == SOLANA else "0x" + data[:20].hex()


def block_height(pid: int, ts_ms: int) -> int:
    """A plausible block height (slot on Solana) for a time, from the chain's block time."""
    seconds = {1: 12.0, 14: 0.75, SOLANA: 0.4}.get(pid, 2.0)
    return int((ts_ms / 1000 - 1_600_000_000) / seconds)


class SimClock:
    """The simulated market clock: starts at the wall clock, runs ``speed`` times faster.

    :param speed: how much faster than real time the market runs.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._start_ms = time.time() * 1000.0
        self._start = time.monotonic()

    def now_ms(self) -> int:
        """Return the simulated time in epoch milliseconds."""
        return int(self._start_ms + (time.monotonic() - self._start) * 1000.0 * self.speed)

    def real_seconds(self, sim_seconds: float) -> float:
        """Convert a simulated duration to real seconds (at least one millisecond)."""
        return max(_MIN_REAL_DELAY, sim_seconds / self.speed)


@attrs.frozen
class Token:
    """A token's fixed traits."""

    pid: int
    address: str
    symbol: str
    price: float
    liquidity: float
    supply: float

    @property
    def volatility(self) -> float:
        """The sigma of one swap's price step; stablecoins barely move."""
        return 0.0001 if self.price == 1.0 else 0.004


@attrs.frozen
class Kind:
    """How one kind of source behaves.

    :param delay: simulated seconds until the source ticks next.
    :param emit: the pushes of one tick.
    """

    delay: Callable[[World, Source], float]
    emit: Callable[[World, Source], list[Delivery]]


class World:
    """Seeded generators, per-source state, and the tokens and pools of each platform.

    :param seed: makes every value reproducible; any int or str.
    :param speed: how much faster than real time the market runs.
    :param null_rate: chance that an optional key is ``null`` or missing (half each).
    """

    def __init__(self, *, seed: int | str, speed: float = 1.0, null_rate: float = 0.03) -> None:
        self.seed = seed
        self.clock = SimClock(speed)
        self.null_rate = null_rate
        self._rngs: dict[Source, random.Random] = {}
        self._states: dict[Source, dict[str, Any]] = {}
        self._tokens: dict[tuple[int, str], Token] = {}

    def rng(self, source: Source) -> random.Random:
        """The source's own generator, seeded from the world's seed and the source."""
        found = self._rngs.get(source)
        if found is None:
            found = self._rngs[source] = random.Random(f"{self.seed}|{source!r}")
        return found

    def state(self, source: Source, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The source's mutable state, made on first use."""
        found = self._states.get(source)
        if found is None:
            found = self._states[source] = make()
        return found

    def restart(self, source: Source) -> None:
        """Forget when ``source`` was due, so a source started again does not catch up on
        the time it was stopped; the rest of its state (a candle's last close) is kept."""
        self._states.get(source, {}).pop(DUE, None)

    def token(self, pid: int, address: str) -> Token:
        """A token: quote tokens are the real ones, others are derived from the address."""
        key = (pid, address)
        found = self._tokens.get(key)
        if found is None:
            found = self._tokens[key] = self._make_token(pid, address)
        return found

    def _make_token(self, pid: int, address: str) -> Token:
        key = (pid, address)
        rng = random.Random(f"{self.seed}|token|{pid}|{address}")
        for quote, symbol, price in self.quotes(pid):
            if quote == address:
                return Token(pid, address, symbol, price, 10 ** rng.uniform(7, 9), 1e9)
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        symbol = "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
        symbol, price = _KNOWN.get(key, (symbol, 10 ** rng.uniform(-7, 1.5)))
        return Token(
            pid,
            address,
            symbol,
            price=price,
            liquidity=10 ** rng.uniform(4, 7.5),
            supply=10 ** rng.uniform(8, 12),
        )

    def quotes(self, pid: int) -> tuple[tuple[str, str, float], ...]:
        """The platform's wrapped native token and USD stablecoin: (address, symbol, price)."""
        known = _QUOTES.get(pid)
        if known is not None:
            return known
        return (
            (address_for(pid, digest("native", pid)), "WNATIVE", 100.0),
            (address_for(pid, digest("stable", pid)), "USDX", 1.0),
        )

    def pools(self, pid: int, address: str) -> list[tuple[str, str, str]]:
        """A token's pools as (pool address, token0, token1), the tokens sorted like Uniswap.

        Every token trades against the platform's two quote tokens; the quote tokens trade
        against each other. So subscribing a token and one of its quote tokens shows the
        same swap on both subscriptions.
        """
        quotes = [quote for quote, _, _ in self.quotes(pid)]
        pairs = [quotes] if address in quotes else [[address, quote] for quote in quotes]
        out = []
        for pair in pairs:
            token0, token1 = sorted(pair)
            out.append((address_for(pid, digest("pool", pid, token0, token1)), token0, token1))
        return out

    def scrub(self, rng: random.Random, payload: Payload, optional: tuple[str, ...]) -> Payload:
        """Null or drop a few optional keys, as live frames sometimes do."""
        for key in optional:
            roll = rng.random()
            if roll < self.null_rate / 2:
                payload[key] = None
            elif roll < self.null_rate and key in payload:
                del payload[key]
        return payload

    def walk(self, rng: random.Random, value: float, sigma: float) -> float:
        """One step of a geometric random walk."""
        return value * math.exp(rng.gauss(0.0, sigma))


def mean_delay(mean: float) -> Callable[[World, Source], float]:
    """Event-driven timing: exponential gaps of ``mean`` simulated seconds."""

    def delay(world: World, source: Source) -> float:
        return world.rng(source).expovariate(1.0 / mean)

    return delay


def uniform_delay(low: float, high: float) -> Callable[[World, Source], float]:
    """Update-driven timing: gaps drawn uniformly between ``low`` and ``high`` seconds."""

    def delay(world: World, source: Source) -> float:
        return world.rng(source).uniform(low, high)

    return delay
