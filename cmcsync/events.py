"""Typed events: one frozen attrs class per CMC channel.

Every data push becomes an instance of its channel's class (see :mod:`cmcsync.channels`).
All events share :class:`Event`'s fields: ``channel``, ``params`` (the push's echo of the
subscription, list param scalar), ``ts`` (server push time, epoch ms) and ``extra`` (every
wire key the class does not know, kept verbatim). The payload sits under descriptive
snake_case names; each class's docstring lists the wire key of every attribute, and
:func:`wire_map` gives the same mapping to code.

Values:

- every payload attribute is ``None`` when the server sends ``null`` or leaves the key out,
  except the documented required keys (``cid`` and ``p`` of the latest price);
- counts, ids, block heights and timestamps are ``int``; timestamps are epoch milliseconds,
  named ``..._ts``, each with a ``datetime`` twin (``event.time``, ``event.event_time``...);
- every other number (prices, USD values, token amounts, percentages on the 0-100 scale) is a
  ``float``, or a :class:`decimal.Decimal` holding the exact JSON text when the client is
  built with ``decimal=True``;
- a value of the wrong type for its attribute (a string where a count belongs, ``true``
  where a number belongs) leaves the attribute ``None`` and is kept in ``extra`` under its
  wire key.

Holder channels carry several kinds of message, told apart by ``tp``: each known kind has
its own subclass (:class:`HolderTopShare`, :class:`WalletTokenBalance`...); a kind cmcsync
does not know decodes to the base class (:class:`HoldersMetrics`,
:class:`HolderWalletUpdate`) with its fields in ``extra``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, overload

import attrs

__all__ = [
    "POOL_METRIC_WINDOWS",
    "TOKEN_METRIC_WINDOWS",
    "CryptoLatestPrice",
    "Event",
    "HolderCount",
    "HolderTagBalance",
    "HolderTagDistribution",
    "HolderTagPnl",
    "HolderTopShare",
    "HolderWalletUpdate",
    "HoldersMetrics",
    "Kline",
    "LiquidityEvent",
    "PoolMetric",
    "PoolMetricWindow",
    "TokenAggEvent",
    "TokenMetric",
    "TokenMetricWindow",
    "Transaction",
    "UniqueTrader",
    "WalletLastActive",
    "WalletNativeBalance",
    "WalletPnlStats",
    "WalletPositionTime",
    "WalletTokenBalance",
    "to_datetime",
    "wire_map",
]

#: The ``win`` values CMC documents for ``onchain@token_metric``; others are kept too.
TOKEN_METRIC_WINDOWS: tuple[str, ...] = ("1m", "5m", "1h", "4h", "24h")

#: The window keys CMC documents for ``onchain@pool_metric``; other keys shaped like a
#: window (digits and a unit: ``30m``, ``1d``...) are decoded as windows too.
POOL_METRIC_WINDOWS: tuple[str, ...] = ("5m", "1h", "4h", "24h", "7d")

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_C = TypeVar("_C", bound=type)


@overload
def to_datetime(ms: int) -> _dt.datetime: ...
@overload
def to_datetime(ms: None) -> None: ...
def to_datetime(ms: int | None) -> _dt.datetime | None:
    """Convert epoch milliseconds to an aware UTC :class:`~datetime.datetime`.

    :param ms: milliseconds since 1970-01-01 UTC, or ``None``.
    :returns: the exact instant (no float rounding), or ``None`` for ``None``.
    :raises OverflowError: if ``ms`` lies outside the years 1-9999.
    """
    if ms is None:
        return None
    return _EPOCH + _dt.timedelta(milliseconds=ms)


def wire_map(event_type: type) -> dict[str, str]:
    """Return the attribute name → wire key mapping of an event or window class.

    The codec decodes with this very mapping, so documentation built from it cannot drift.

    :param event_type: an attrs class of this module.
    :returns: ``{"price": "p", ...}`` in field order; fields without a wire key of their own
        (the envelope fields, ``extra``, pool windows) are left out.
    """
    return {
        field.name: field.metadata["wire"]
        for field in attrs.fields(event_type)
        if field.metadata.get("wire") is not None
    }


def _w(key: str, doc: str) -> Any:
    """An optional payload attribute read from wire key ``key``; ``doc`` goes in the docstring."""
    return attrs.field(default=None, metadata={"wire": key, "doc": doc})


def _required(key: str, doc: str) -> dict[str, Any]:
    """The metadata of a payload attribute whose wire key must be present and usable.

    Used as ``attrs.field(metadata=_required(...))`` so type checkers see no default.
    """
    return {"wire": key, "doc": doc, "required": True}


def _wire_doc(cls: _C) -> _C:
    """Append the attribute ← wire key list to a class docstring, from the field metadata."""
    lines = []
    for field in attrs.fields(cls):
        key = field.metadata.get("wire")
        if key is None:
            continue
        tail = " Required." if field.metadata.get("required") else ""
        lines.append(f":ivar {field.name}: ``{key}`` — {field.metadata['doc']}{tail}")
    if lines:
        # cleandoc first: the appended lines are unindented, the class's own are not.
        head = inspect.cleandoc(cls.__doc__ or "")
        cls.__doc__ = f"{head}\n\nWire keys:\n\n" + "\n".join(lines) + "\n"
    return cls


@attrs.frozen(kw_only=True)
class Event:
    """Fields common to every data event.

    :ivar channel: the channel's wire name, e.g. ``"onchain@kline"``.
    :ivar params: the push's ``params``: the subscription, with the list param scalar.
    :ivar ts: the envelope ``ts``: server push time, epoch ms (see :attr:`time`).
    :ivar extra: every payload key this class does not know, or whose value did not fit its
        attribute, with its value exactly as received.
    """

    #: The payload key whose string value selects a subclass (``tp`` on holder channels).
    route_key: ClassVar[str | None] = None
    #: The value of :attr:`route_key` that selects this class.
    route_value: ClassVar[str | None] = None

    channel: str
    params: Mapping[str, Any]
    ts: int
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def time(self) -> _dt.datetime:
        """The push time :attr:`ts` as an aware UTC datetime."""
        return to_datetime(self.ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class CryptoLatestPrice(Event):
    """``market@crypto_latest_price``: a cryptocurrency's latest CMC aggregate quote."""

    crypto_id: int = attrs.field(metadata=_required("cid", "CMC cryptocurrency id."))
    price: float | Decimal = attrs.field(metadata=_required("p", "spot price, USD."))
    volume_24h: float | Decimal | None = _w("vu", "trading volume over 24 h, USD.")
    market_cap: float | Decimal | None = _w("mc", "market capitalisation, USD.")
    circulating_supply: float | Decimal | None = _w("cs", "circulating supply, coins.")
    percent_change_24h: float | Decimal | None = _w("p24h", "price change over 24 h, %.")
    percent_change_7d: float | Decimal | None = _w("p7d", "price change over 7 days, %.")
    percent_change_30d: float | Decimal | None = _w("p30d", "price change over 30 days, %.")
    percent_change_60d: float | Decimal | None = _w("p60d", "price change over 60 days, %.")
    percent_change_3m: float | Decimal | None = _w("p3m", "price change over 3 months, %.")
    percent_change_1y: float | Decimal | None = _w("p1y", "price change over 1 year, %.")
    percent_change_ytd: float | Decimal | None = _w("pytd", "price change year to date, %.")
    percent_change_all: float | Decimal | None = _w("pall", "price change all time, %.")
    fdv_percent_change_24h: float | Decimal | None = _w(
        "fdv24h", "fully diluted market cap change over 24 h, %."
    )


@_wire_doc
@attrs.frozen(kw_only=True)
class TokenAggEvent(Event):
    """``onchain@token_agg_event``: a token's price and liquidity after a swap."""

    platform_id: int | None = _w("pid", "CMC platform id (14 BSC, 16 Solana...).")
    address: str | None = _w("a", "token address.")
    aggregate_price: float | Decimal | None = _w("ap", "price aggregated across pools, USD.")
    price: float | Decimal | None = _w("p", "price in the pool of the swap, USD.")
    liquidity: float | Decimal | None = _w("lu", "token liquidity across pools, USD.")
    event_ts: int | None = _w("ts", "event time, epoch ms (see ``event_time``).")

    @property
    def event_time(self) -> _dt.datetime | None:
        """:attr:`event_ts` as an aware UTC datetime."""
        return to_datetime(self.event_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class Transaction(Event):
    """``onchain@transaction``: one swap.

    The same swap may come from both of its tokens' subscriptions;
    ``(tx_hash, log_index or instruction_index)`` identifies it.
    """

    platform_id: int | None = _w("pid", "CMC platform id.")
    factory_address: str | None = _w("f", "DEX factory address.")
    block_height: int | None = _w("bh", "block height (slot on Solana).")
    side: str | None = _w("tp", "``buy`` or ``sell``, relative to the pair.")
    pool_address: str | None = _w("pa", "pool (pair) address.")
    token0_address: str | None = _w("t0a", "token0 address.")
    token1_address: str | None = _w("t1a", "token1 address.")
    token0_symbol: str | None = _w("t0s", "token0 symbol.")
    token1_symbol: str | None = _w("t1s", "token1 symbol.")
    value_usd: float | Decimal | None = _w("vu", "swap value, USD.")
    quote_price: float | Decimal | None = _w("q", "price in the quote token.")
    token0_price_usd: float | Decimal | None = _w("t0pu", "token0 price, USD.")
    token1_price_usd: float | Decimal | None = _w("t1pu", "token1 price, USD.")
    token0_amount: float | Decimal | None = _w("a0", "token0 amount, token units.")
    token1_amount: float | Decimal | None = _w("a1", "token1 amount, token units.")
    tx_hash: str | None = _w("tx", "transaction hash (signature on Solana).")
    event_ts: int | None = _w("ts", "event time, epoch ms (see ``event_time``).")
    maker_address: str | None = _w("ma", "maker (trader) address.")
    base_address: str | None = _w("ba", "an asset address of the pair (meaning undocumented).")
    quote_index: int | None = _w("qi", "which side (0/1) is the quote token.")
    token_in_index: int | None = _w("tii", "which side (0/1) went into the pool.")
    log_index: int | None = _w("lgid", "log index within the transaction (EVM).")
    instruction_index: int | None = _w("iix", "instruction index within the transaction (Solana).")
    excluded: bool | None = _w("ex", "``True`` if CMC leaves the swap out of its aggregates.")
    exclusion_reason: int | None = _w("txtp", "why the swap is excluded (code).")

    @property
    def event_time(self) -> _dt.datetime | None:
        """:attr:`event_ts` as an aware UTC datetime."""
        return to_datetime(self.event_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class LiquidityEvent(Event):
    """``onchain@liquidity_event``: liquidity added, removed or migrated.

    Like a swap, it may come twice and is identified the same way as a :class:`Transaction`.
    """

    platform_id: int | None = _w("pid", "CMC platform id.")
    factory_address: str | None = _w("f", "DEX factory address.")
    event_ts: int | None = _w("ts", "event time, epoch ms (see ``event_time``).")
    kind: str | None = _w("tp", "``add``, ``remove`` or ``migrate``.")
    token0_symbol: str | None = _w("t0s", "token0 symbol.")
    token1_symbol: str | None = _w("t1s", "token1 symbol.")
    token0_address: str | None = _w("t0a", "token0 address.")
    token1_address: str | None = _w("t1a", "token1 address.")
    token0_amount: float | Decimal | None = _w("a0", "token0 amount, token units.")
    token1_amount: float | Decimal | None = _w("a1", "token1 amount, token units.")
    value_usd: float | Decimal | None = _w("vu", "event value, USD.")
    maker_address: str | None = _w("ma", "maker address.")
    tx_hash: str | None = _w("tx", "transaction hash (signature on Solana).")
    log_index: int | None = _w("lgid", "log index within the transaction (EVM).")
    instruction_index: int | None = _w("iix", "instruction index within the transaction (Solana).")

    @property
    def event_time(self) -> _dt.datetime | None:
        """:attr:`event_ts` as an aware UTC datetime."""
        return to_datetime(self.event_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class Kline(Event):
    """``onchain@kline``: one OHLCV candle; the token and interval are in ``params``."""

    open: float | Decimal | None = _w("o", "open price, USD.")
    high: float | Decimal | None = _w("h", "high price, USD.")
    low: float | Decimal | None = _w("l", "low price, USD.")
    close: float | Decimal | None = _w("c", "close price, USD.")
    volume_usd: float | Decimal | None = _w("vu", "volume, USD.")
    open_ts: int | None = _w("ot", "candle open time, epoch ms (see ``open_time``).")

    @property
    def open_time(self) -> _dt.datetime | None:
        """:attr:`open_ts` as an aware UTC datetime."""
        return to_datetime(self.open_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class TokenMetricWindow:
    """One rolling window of a :class:`TokenMetric` (an element of ``sts``).

    :ivar extra: keys of the window object this class does not know, kept verbatim.
    """

    window: str | None = _w("win", "window name: ``1m``, ``5m``, ``1h``, ``4h``, ``24h``.")
    volume_token: float | Decimal | None = _w("vn", "volume, token units.")
    volume_usd: float | Decimal | None = _w("vu", "volume, USD.")
    percent_change: float | Decimal | None = _w("pc", "price change, %.")
    txs: int | None = _w("txs", "number of swaps.")
    buys: int | None = _w("bc", "number of buys.")
    sells: int | None = _w("sc", "number of sells.")
    buy_volume_usd: float | Decimal | None = _w("bvu", "buy volume, USD.")
    sell_volume_usd: float | Decimal | None = _w("svu", "sell volume, USD.")
    buy_volume_token: float | Decimal | None = _w("bvn", "buy volume, token units.")
    sell_volume_token: float | Decimal | None = _w("svn", "sell volume, token units.")
    unique_traders: int | None = _w("ut", "unique traders.")
    unique_buyers: int | None = _w("but", "unique buyers.")
    unique_sellers: int | None = _w("sut", "unique sellers.")
    high: float | Decimal | None = _w("h", "high price, USD.")
    low: float | Decimal | None = _w("l", "low price, USD.")
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@_wire_doc
@attrs.frozen(kw_only=True)
class TokenMetric(Event):
    """``onchain@token_metric``: a token's rolling metrics.

    A push may carry only some windows: treat it as an update of the windows it has.
    """

    platform_id: int | None = _w("pid", "CMC platform id.")
    address: str | None = _w("a", "token address.")
    price: float | Decimal | None = _w("p", "price, USD.")
    market_cap: float | Decimal | None = _w("mc", "market capitalisation, USD.")
    liquidity: float | Decimal | None = _w("lu", "liquidity, USD.")
    windows: Mapping[str, TokenMetricWindow] = attrs.field(
        factory=dict,
        metadata={
            "wire": "sts",
            "doc": "the window objects, keyed by their ``win`` in wire order (empty if "
            "none); an element that is not an object or has no ``win`` stays in "
            "``extra['sts']``.",
        },
    )

    @property
    def stats(self) -> tuple[TokenMetricWindow, ...]:
        """The windows of this push in wire order, as a tuple."""
        return tuple(self.windows.values())


@_wire_doc
@attrs.frozen(kw_only=True)
class PoolMetricWindow:
    """One rolling window of a :class:`PoolMetric`.

    :ivar extra: keys of the window object this class does not know, kept verbatim.
    """

    buy_volume_token: float | Decimal | None = _w("bvn", "buy volume, token units.")
    buy_volume_usd: float | Decimal | None = _w("bvu", "buy volume, USD.")
    sell_volume_token: float | Decimal | None = _w("svn", "sell volume, token units.")
    sell_volume_usd: float | Decimal | None = _w("svu", "sell volume, USD.")
    unique_traders: int | None = _w("ut", "unique traders.")
    unique_buyers: int | None = _w("but", "unique buyers.")
    unique_sellers: int | None = _w("sut", "unique sellers.")
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@_wire_doc
@attrs.frozen(kw_only=True)
class PoolMetric(Event):
    """``onchain@pool_metric``: a pool's rolling metrics.

    :ivar windows: the top-level window objects (``5m``, ``1h``, ``4h``, ``24h``, ``7d``, and
        any other key shaped like a window, such as ``30m``), keyed by window name, in wire
        order.
    """

    platform_id: int | None = _w("pid", "CMC platform id.")
    pool_address: str | None = _w("pa", "pool address.")
    windows: Mapping[str, PoolMetricWindow] = attrs.field(
        factory=dict, metadata={"wire_pattern": r"[0-9]+[smhdwy]"}
    )


@_wire_doc
@attrs.frozen(kw_only=True)
class UniqueTrader(Event):
    """``onchain@unique_trader``: distinct traders of a token in one interval."""

    unique_traders: int | None = _w("ut", "unique traders in the interval.")
    open_ts: int | None = _w("ot", "interval open time, epoch ms (see ``open_time``).")

    @property
    def open_time(self) -> _dt.datetime | None:
        """:attr:`open_ts` as an aware UTC datetime."""
        return to_datetime(self.open_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class HoldersMetrics(Event):
    """``onchain@holders_metrics``: a token's holder analytics, one kind per push.

    Known kinds decode to a subclass chosen by ``tp``; an unknown kind decodes to this class,
    with its kind-specific keys in ``extra``.
    """

    route_key: ClassVar[str | None] = "tp"

    platform_id: int | None = _w("pid", "CMC platform id.")
    address: str | None = _w("a", "token address.")
    kind: str | None = _w("tp", "the kind of metric, e.g. ``top_share``.")
    event_ts: int | None = _w("ts", "event time, epoch ms (see ``event_time``).")

    @property
    def event_time(self) -> _dt.datetime | None:
        """:attr:`event_ts` as an aware UTC datetime."""
        return to_datetime(self.event_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderTagDistribution(HoldersMetrics):
    """Holders by tag (``tp = "tag_distribution"``)."""

    route_value: ClassVar[str | None] = "tag_distribution"

    dev_percent: float | Decimal | None = _w("devp", "share held by developer wallets, %.")
    kol_holders: int | None = _w("khc", "holders tagged KOL.")
    whale_holders: int | None = _w("whc", "holders tagged whale.")
    bundler_holders: int | None = _w("bdhc", "holders tagged bundler.")
    sniper_holders: int | None = _w("shc", "holders tagged sniper.")
    bot_holders: int | None = _w("bhc", "holders tagged bot.")
    smart_money_holders: int | None = _w("smhc", "holders tagged smart money.")


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderTopShare(HoldersMetrics):
    """Supply concentration (``tp = "top_share"``)."""

    route_value: ClassVar[str | None] = "top_share"

    top10_percent: float | Decimal | None = _w("t10p", "share held by the top 10 holders, %.")
    top50_percent: float | Decimal | None = _w("t50p", "share held by the top 50 holders, %.")
    top100_percent: float | Decimal | None = _w("t100p", "share held by the top 100 holders, %.")
    top100_balance: float | Decimal | None = _w("t100ab", "balance of the top 100, token units.")


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderCount(HoldersMetrics):
    """Holder count (``tp = "holder_count"``); keys undocumented: see ``extra``."""

    route_value: ClassVar[str | None] = "holder_count"


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderTagPnl(HoldersMetrics):
    """Profit and loss by tag (``tp = "tag_pnl"``); keys undocumented: see ``extra``."""

    route_value: ClassVar[str | None] = "tag_pnl"


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderTagBalance(HoldersMetrics):
    """Balance by tag (``tp = "tag_balance"``); keys undocumented: see ``extra``."""

    route_value: ClassVar[str | None] = "tag_balance"


@_wire_doc
@attrs.frozen(kw_only=True)
class HolderWalletUpdate(Event):
    """``onchain@holder_wallet_update``: a change to a watched wallet, one kind per push.

    Known kinds decode to a subclass chosen by ``tp``; an unknown kind decodes to this class,
    with its kind-specific keys in ``extra``.
    """

    route_key: ClassVar[str | None] = "tp"

    platform_id: int | None = _w("pid", "CMC platform id.")
    wallet_address: str | None = _w("wa", "wallet address.")
    kind: str | None = _w("tp", "the kind of update, e.g. ``token_balance``.")
    event_ts: int | None = _w("ts", "event time, epoch ms (see ``event_time``).")

    @property
    def event_time(self) -> _dt.datetime | None:
        """:attr:`event_ts` as an aware UTC datetime."""
        return to_datetime(self.event_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class WalletTokenBalance(HolderWalletUpdate):
    """A token balance of the wallet (``tp = "token_balance"``)."""

    route_value: ClassVar[str | None] = "token_balance"

    token_address: str | None = _w("a", "token address (mint on Solana).")
    balance: float | Decimal | None = _w("b", "balance, token units.")
    holding_percent: float | Decimal | None = _w("hp", "share of the token supply held, %.")
    block_height: int | None = _w("bh", "block height (slot on Solana).")


@_wire_doc
@attrs.frozen(kw_only=True)
class WalletLastActive(HolderWalletUpdate):
    """When the wallet was last active (``tp = "last_active"``; key inferred from CMC)."""

    route_value: ClassVar[str | None] = "last_active"

    last_active_ts: int | None = _w("lat", "last activity, epoch ms (see ``last_active_time``).")

    @property
    def last_active_time(self) -> _dt.datetime | None:
        """:attr:`last_active_ts` as an aware UTC datetime."""
        return to_datetime(self.last_active_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class WalletPositionTime(HolderWalletUpdate):
    """When the wallet's position opened and cleared (``tp = "position_time"``; keys inferred)."""

    route_value: ClassVar[str | None] = "position_time"

    opened_ts: int | None = _w("spot", "position opened, epoch ms (see ``opened_time``).")
    cleared_ts: int | None = _w("spct", "position cleared, epoch ms (see ``cleared_time``).")

    @property
    def opened_time(self) -> _dt.datetime | None:
        """:attr:`opened_ts` as an aware UTC datetime."""
        return to_datetime(self.opened_ts)

    @property
    def cleared_time(self) -> _dt.datetime | None:
        """:attr:`cleared_ts` as an aware UTC datetime."""
        return to_datetime(self.cleared_ts)


@_wire_doc
@attrs.frozen(kw_only=True)
class WalletNativeBalance(HolderWalletUpdate):
    """The wallet's native-coin balance (``tp = "native_balance"``); keys in ``extra``."""

    route_value: ClassVar[str | None] = "native_balance"


@_wire_doc
@attrs.frozen(kw_only=True)
class WalletPnlStats(HolderWalletUpdate):
    """The wallet's profit and loss (``tp = "pnl_stats"``); keys undocumented: see ``extra``."""

    route_value: ClassVar[str | None] = "pnl_stats"
