"""The channel table: one row per CMC streaming channel.

Everything that differs between channels is data in a :class:`Channel` row: the wire name,
the subscribe params, which of them is the list param, the interval enum, the event class,
the per-channel hook, the dedupe key and the expected cadence. The registry, the codec, the
dispatcher, the CLI and the simulator all read these rows; adding a channel means adding a
row here and an event class in :mod:`cmcsync.events`.

Params are validated and normalized here, before anything is sent:

- the list param (``crypto_ids``, ``address``, ``pool_address`` or ``wallet_address``) may be
  a scalar or a list; each element becomes its own subscription, as CMC counts them;
- ids (``crypto_ids``, ``platform_id``) are integers; integral strings such as ``"1027"`` are
  accepted and converted, booleans and floats are refused;
- EVM hex addresses (``0x`` followed by hex digits) are compared case-insensitively and sent in
  lower case; any other address (Solana and Tron base58) is kept exactly as given;
- ``interval`` must be one of the channel's documented values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cmcsync import events
from cmcsync.exceptions import ConfigError

__all__ = [
    "CHANNELS",
    "KLINE_INTERVALS",
    "UNIQUE_TRADER_INTERVALS",
    "Channel",
    "get_channel",
]

#: ``KlineInterval``: the candle intervals of ``onchain@kline``.
KLINE_INTERVALS: tuple[str, ...] = ("1s", "5s", "30s", "1m", "3m", "5m", "15m", "30m")

#: ``UniqueTraderInterval``: CMC's enum lists the kline values but its description says the
#: channel goes "up to 1d"; the three longer values are accepted so a user is never refused
#: something the server may allow.
UNIQUE_TRADER_INTERVALS: tuple[str, ...] = (*KLINE_INTERVALS, "1h", "4h", "1d")

_INTERVAL_SECONDS = {
    "1s": 1,
    "5s": 5,
    "30s": 30,
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}

_EVM_HEX = re.compile(r"0x[0-9a-fA-F]+")


def interval_seconds(interval: str) -> int:
    """Return the length of an interval such as ``"5m"`` in seconds."""
    try:
        return _INTERVAL_SECONDS[interval]
    except KeyError:
        raise ConfigError(f"unknown interval {interval!r}", param="interval") from None


def normalize_address(address: str) -> str:
    """Return the identity form of an address: lower case for EVM hex, unchanged otherwise."""
    if _EVM_HEX.fullmatch(address):
        return address.lower()
    return address


def _int_param(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name} must be an integer, not {value!r}", param=name)
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit():
            raise ConfigError(f"{name} must be an integer, not {value!r}", param=name)
        value = int(text)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}", param=name)
    return int(value)


def _address_param(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty address string, not {value!r}", param=name)
    return normalize_address(value.strip())


@attrs.frozen(kw_only=True)
class Channel:
    """One CMC channel and everything cmcsync needs to know about it.

    :param name: the wire name, e.g. ``"market@crypto_latest_price"``.
    :param short: the name without its ``market@``/``onchain@`` prefix; the per-channel hook
        is ``cmcsync_on_<short>``.
    :param title: a human title, as CMC's docs name the channel.
    :param list_param: the param whose list elements are separate subscriptions.
    :param scalar_params: the other required params, in wire order.
    :param intervals: the allowed ``interval`` values, or ``None`` if the channel takes none.
    :param event_type: the :mod:`cmcsync.events` class a ``data`` push decodes into.
    :param dedupe_key: event attribute names whose values identify a push delivered twice
        (a swap seen from its token0 and its token1 subscription); ``None`` if the channel
        never repeats itself. The first name is the transaction, the rest are alternatives
        for the index within it (EVM log index, Solana instruction index).
    :param cadence: the expected seconds between two pushes of one subscription when the
        server pushes on a clock; ``None`` for event-driven channels, whose cadence is set by
        the market. Interval channels push once per interval.
    """

    name: str
    short: str
    title: str
    list_param: str
    scalar_params: tuple[str, ...] = ()
    intervals: tuple[str, ...] | None = None
    event_type: type[events.Event]
    dedupe_key: tuple[str, ...] | None = None
    cadence: float | None = None

    @property
    def hook(self) -> str:
        """The per-channel hook name, e.g. ``"cmcsync_on_kline"``."""
        return f"cmcsync_on_{self.short}"

    @property
    def params(self) -> tuple[str, ...]:
        """Every subscribe param, in wire order."""
        return (*self.scalar_params, self.list_param)

    @property
    def list_is_int(self) -> bool:
        """Whether the list param holds integer ids rather than addresses."""
        return self.list_param == "crypto_ids"

    def expected_cadence(self, params: Mapping[str, Any]) -> float | None:
        """The expected seconds between pushes for one subscription, or ``None``."""
        if self.intervals is not None and "interval" in params:
            return float(interval_seconds(params["interval"]))
        return self.cadence

    def split(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validate ``params`` and return one normalized params dict per subscription.

        :param params: subscribe params as the user gave them; the list param may be a scalar
            or any iterable.
        :returns: a list of dicts, each with the list param as a scalar, in the order given,
            without repeats.
        :raises ConfigError: naming the first missing, unknown or invalid param.
        """
        known = set(self.params)
        for key in params:
            if key not in known:
                raise ConfigError(
                    f"{self.name} takes no param {key!r}; it takes {', '.join(self.params)}",
                    param=key,
                )
        for key in self.params:
            if key not in params or params[key] is None:
                raise ConfigError(f"{self.name} requires the param {key!r}", param=key)

        scalars: dict[str, Any] = {}
        for key in self.scalar_params:
            value = params[key]
            if key == "platform_id":
                scalars[key] = _int_param(key, value)
            elif key == "interval":
                assert self.intervals is not None
                if value not in self.intervals:
                    raise ConfigError(
                        f"interval {value!r} is not valid for {self.name}; "
                        f"use one of {', '.join(self.intervals)}",
                        param="interval",
                    )
                scalars[key] = value
            else:  # pragma: no cover - every scalar param of the table is handled above
                scalars[key] = value

        raw = params[self.list_param]
        if isinstance(raw, (str, int)) and not isinstance(raw, bool):
            items: Iterable[Any] = [raw]
        elif isinstance(raw, Iterable) and not isinstance(raw, (bytes, Mapping)):
            items = list(raw)
        else:
            raise ConfigError(
                f"{self.list_param} must be a value or a list of values, not {raw!r}",
                param=self.list_param,
            )
        convert = _int_param if self.list_is_int else _address_param
        out: list[dict[str, Any]] = []
        seen: set[Any] = set()
        for item in items:
            value = convert(self.list_param, item)
            if value in seen:
                continue
            seen.add(value)
            out.append({**scalars, self.list_param: value})
        if not out:
            raise ConfigError(f"{self.list_param} must not be empty", param=self.list_param)
        return out

    def scalar_form(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Normalize the ``params`` echoed by a data push (list param as a scalar).

        :returns: the normalized dict, or ``None`` if the echo does not fit this channel.
        """
        try:
            found = self.split(params)
        except ConfigError:
            return None
        return found[0] if len(found) == 1 else None


_ONCHAIN = ("platform_id",)
_ONCHAIN_INTERVAL = ("platform_id", "interval")

#: Every channel, by wire name, in the order of CMC's documentation.
CHANNELS: Mapping[str, Channel] = {
    row.name: row
    for row in (
        Channel(
            name="market@crypto_latest_price",
            short="crypto_latest_price",
            title="Latest Price",
            list_param="crypto_ids",
            event_type=events.CryptoLatestPrice,
            # ~5 s for the top 500 by rank, ~15 s for the rest: the slower is the bound.
            cadence=15.0,
        ),
        Channel(
            name="onchain@token_agg_event",
            short="token_agg_event",
            title="Aggregated Token Price and Liquidity",
            list_param="address",
            scalar_params=_ONCHAIN,
            event_type=events.TokenAggEvent,
        ),
        Channel(
            name="onchain@transaction",
            short="transaction",
            title="Transaction",
            list_param="address",
            scalar_params=_ONCHAIN,
            event_type=events.Transaction,
            dedupe_key=("tx_hash", "log_index", "instruction_index"),
        ),
        Channel(
            name="onchain@liquidity_event",
            short="liquidity_event",
            title="Liquidity Event",
            list_param="address",
            scalar_params=_ONCHAIN,
            event_type=events.LiquidityEvent,
            dedupe_key=("tx_hash", "log_index", "instruction_index"),
        ),
        Channel(
            name="onchain@kline",
            short="kline",
            title="Kline",
            list_param="address",
            scalar_params=_ONCHAIN_INTERVAL,
            intervals=KLINE_INTERVALS,
            event_type=events.Kline,
        ),
        Channel(
            name="onchain@token_metric",
            short="token_metric",
            title="Token Rolling Metrics",
            list_param="address",
            scalar_params=_ONCHAIN,
            event_type=events.TokenMetric,
        ),
        Channel(
            name="onchain@pool_metric",
            short="pool_metric",
            title="Pool Rolling Metric",
            list_param="pool_address",
            scalar_params=_ONCHAIN,
            event_type=events.PoolMetric,
        ),
        Channel(
            name="onchain@unique_trader",
            short="unique_trader",
            title="Unique Trader",
            list_param="address",
            scalar_params=_ONCHAIN_INTERVAL,
            intervals=UNIQUE_TRADER_INTERVALS,
            event_type=events.UniqueTrader,
        ),
        Channel(
            name="onchain@holders_metrics",
            short="holders_metrics",
            title="Holder Metrics",
            list_param="address",
            scalar_params=_ONCHAIN,
            event_type=events.HoldersMetrics,
        ),
        Channel(
            name="onchain@holder_wallet_update",
            short="holder_wallet_update",
            title="Holder Wallet Update",
            list_param="wallet_address",
            scalar_params=_ONCHAIN,
            event_type=events.HolderWalletUpdate,
        ),
    )
}


def get_channel(name: str) -> Channel:
    """Return the row for a channel, by wire name (``onchain@kline``) or short name (``kline``).

    :raises ConfigError: for a channel CMC does not have, listing the ones it has.
    """
    row = CHANNELS.get(name)
    if row is None:
        for candidate in CHANNELS.values():
            if candidate.short == name:
                return candidate
        raise ConfigError(
            f"unknown channel {name!r}; the channels are {', '.join(CHANNELS)}", param="channel"
        )
    return row
