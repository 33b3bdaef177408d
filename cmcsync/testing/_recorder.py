"""EventRecorder: a plugin that records every hook call, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from cmcsync import events
from cmcsync.hookspecs import hookimpl

__all__ = ["EventRecorder"]

_T = TypeVar("_T")


class EventRecorder:
    """A plugin implementing every cmcsync hook that records what it receives.

    Register it like any plugin (``cmcsync.Client(plugins=[recorder])``), then wait for what
    the test expects; every method is thread-safe::

        recorder = EventRecorder()
        ...
        prices = recorder.wait_for_events(3, channel="market@crypto_latest_price")
        assert recorder.hook_calls("cmcsync_on_connect")[0]["reconnect"] is False

    :param subscriptions: what the recorder answers to ``cmcsync_subscriptions``, so a test
        can check plugin-declared subscriptions; ``(channel, params)`` pairs.
    """

    def __init__(self, subscriptions: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> None:
        self._cond = threading.Condition()
        self._subscriptions = list(subscriptions)
        #: Every data event, in the order ``cmcsync_on_event`` received them.
        self.events: list[events.Event] = []
        #: Every hook call as ``(hook name, arguments)``, in the order they were made.
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __repr__(self) -> str:
        return f"<EventRecorder events={len(self.events)} calls={len(self.calls)}>"

    # --- reading ---------------------------------------------------------------------------

    def by_channel(self, channel: str) -> list[events.Event]:
        """The recorded events of one channel (wire name), in arrival order."""
        with self._cond:
            return [event for event in self.events if event.channel == channel]

    def hook_calls(self, hook: str) -> list[dict[str, Any]]:
        """The arguments of every recorded call of ``hook``, in order."""
        with self._cond:
            return [kwargs for name, kwargs in self.calls if name == hook]

    def wait_for_events(
        self, n: int, timeout: float = 5.0, channel: str | None = None
    ) -> list[events.Event]:
        """Wait until at least ``n`` events (of ``channel``, if given) were recorded.

        :returns: the first ``n`` of them.
        :raises TimeoutError: saying how many arrived within ``timeout`` seconds.
        """

        def matching() -> list[events.Event]:
            return [e for e in self.events if channel is None or e.channel == channel]

        found = self._wait(lambda: len(matching()) >= n, timeout)
        with self._cond:
            got = matching()
        if not found:
            what = f"{channel} events" if channel else "events"
            raise TimeoutError(f"expected {n} {what} within {timeout} s, got {len(got)}")
        return got[:n]

    def wait_for(self, predicate: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Wait until ``predicate()`` is true; it is re-checked after every recorded call.

        :param predicate: called with the recorder's lock held, so it may read
            :attr:`events` and :attr:`calls` (and call :meth:`by_channel`) safely.
        :returns: the predicate's last (true) value.
        :raises TimeoutError: if it is still false after ``timeout`` seconds.
        """
        result = self._wait(predicate, timeout)
        if not result:
            name = getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(
                f"condition {name} still false after {timeout} s "
                f"({len(self.events)} events, {len(self.calls)} hook calls recorded)"
            )
        return result

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._cond:
            self.events.clear()
            self.calls.clear()

    def _wait(self, predicate: Callable[[], _T], timeout: float) -> _T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return result

    def _record(self, hook: str, kwargs: dict[str, Any], event: events.Event | None = None) -> None:
        with self._cond:
            if event is not None:
                self.events.append(event)
            self.calls.append((hook, kwargs))
            self._cond.notify_all()

    # --- the hooks -------------------------------------------------------------------------

    @hookimpl
    def cmcsync_subscriptions(self, client: Any) -> list[tuple[str, Mapping[str, Any]]] | None:
        self._record("cmcsync_subscriptions", {"client": client})
        return list(self._subscriptions) or None

    @hookimpl
    def cmcsync_on_connect(self, client: Any, url: str, reconnect: bool) -> None:
        self._record("cmcsync_on_connect", {"client": client, "url": url, "reconnect": reconnect})

    @hookimpl
    def cmcsync_on_disconnect(
        self, client: Any, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        self._record(
            "cmcsync_on_disconnect",
            {"client": client, "code": code, "reason": reason, "will_reconnect": will_reconnect},
        )

    @hookimpl
    def cmcsync_on_subscription_state(
        self, client: Any, channel: str, params: Mapping[str, Any], state: str, error: Any
    ) -> None:
        self._record(
            "cmcsync_on_subscription_state",
            {
                "client": client,
                "channel": channel,
                "params": params,
                "state": state,
                "error": error,
            },
        )

    @hookimpl
    def cmcsync_on_gap(
        self, client: Any, channel: str, params: Mapping[str, Any], start_ms: int, end_ms: int
    ) -> None:
        self._record(
            "cmcsync_on_gap",
            {
                "client": client,
                "channel": channel,
                "params": params,
                "start_ms": start_ms,
                "end_ms": end_ms,
            },
        )

    @hookimpl
    def cmcsync_on_stale(
        self, client: Any, channel: str, params: Mapping[str, Any], silent_for: float, action: str
    ) -> None:
        self._record(
            "cmcsync_on_stale",
            {
                "client": client,
                "channel": channel,
                "params": params,
                "silent_for": silent_for,
                "action": action,
            },
        )

    @hookimpl
    def cmcsync_on_close(self, client: Any) -> None:
        self._record("cmcsync_on_close", {"client": client})

    @hookimpl
    def cmcsync_on_event(self, event: events.Event, client: Any) -> None:
        self._record("cmcsync_on_event", {"event": event, "client": client}, event)

    @hookimpl
    def cmcsync_on_crypto_latest_price(self, event: events.CryptoLatestPrice, client: Any) -> None:
        self._record("cmcsync_on_crypto_latest_price", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_token_agg_event(self, event: events.TokenAggEvent, client: Any) -> None:
        self._record("cmcsync_on_token_agg_event", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_transaction(self, event: events.Transaction, client: Any) -> None:
        self._record("cmcsync_on_transaction", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_liquidity_event(self, event: events.LiquidityEvent, client: Any) -> None:
        self._record("cmcsync_on_liquidity_event", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_kline(self, event: events.Kline, client: Any) -> None:
        self._record("cmcsync_on_kline", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_token_metric(self, event: events.TokenMetric, client: Any) -> None:
        self._record("cmcsync_on_token_metric", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_pool_metric(self, event: events.PoolMetric, client: Any) -> None:
        self._record("cmcsync_on_pool_metric", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_unique_trader(self, event: events.UniqueTrader, client: Any) -> None:
        self._record("cmcsync_on_unique_trader", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_holders_metrics(self, event: events.HoldersMetrics, client: Any) -> None:
        self._record("cmcsync_on_holders_metrics", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_holder_wallet_update(
        self, event: events.HolderWalletUpdate, client: Any
    ) -> None:
        self._record("cmcsync_on_holder_wallet_update", {"event": event, "client": client})

    @hookimpl
    def cmcsync_on_error(self, client: Any, error: BaseException) -> None:
        self._record("cmcsync_on_error", {"client": client, "error": error})

    @hookimpl
    def cmcsync_on_plugin_error(
        self, client: Any, plugin_name: str, hook_name: str, error: BaseException, disabled: bool
    ) -> None:
        self._record(
            "cmcsync_on_plugin_error",
            {
                "client": client,
                "plugin_name": plugin_name,
                "hook_name": hook_name,
                "error": error,
                "disabled": disabled,
            },
        )

    @hookimpl
    def cmcsync_on_slow_consumer(self, client: Any, depth: int, capacity: int) -> None:
        self._record(
            "cmcsync_on_slow_consumer", {"client": client, "depth": depth, "capacity": capacity}
        )
