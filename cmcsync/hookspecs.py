"""Every hook a cmcsync plugin can implement.

A plugin is any object or module with functions named after these specs and decorated with
:data:`hookimpl` (re-exported as ``cmcsync.hookimpl``). An implementation may take any subset
of a spec's arguments, by name::

    import cmcsync

    @cmcsync.hookimpl
    def cmcsync_on_kline(event):
        print(event.params["address"], event.ts)

Installed packages register plugins through the ``cmcsync`` entry-point group (see
:mod:`cmcsync.plugins`).

Every hook except :func:`cmcsync_subscriptions` runs on the dispatcher thread
``cmcsync-dispatch``, never on a connection's reader thread, so a slow plugin delays other
plugins but never a ping: the reader thread reads the socket whenever the dispatcher thread
is busy. cmcsync calls each plugin on its own: one plugin raising does not
keep the others from the call (see the **Exceptions** paragraph of each hook).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cmcsync import events
    from cmcsync.client import Client
    from cmcsync.exceptions import CmcsyncError, SubscriptionError

__all__ = ["PROJECT_NAME", "SUBSCRIPTION_STATES", "hookimpl", "hookspec"]

#: The pluggy project name: the marker attribute prefix and the entry-point group.
PROJECT_NAME = "cmcsync"

#: Marks a hook specification in this module.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The values of ``state`` in :func:`cmcsync_on_subscription_state`.
SUBSCRIPTION_STATES: tuple[str, ...] = ("pending", "active", "rejected", "removed")


# -------------------------------------------------------------------------------------------
# Start-up
# -------------------------------------------------------------------------------------------


@hookspec
def cmcsync_subscriptions(client: Client) -> Iterable[tuple[str, Mapping[str, Any]]] | None:
    """Declare the subscriptions this plugin needs.

    This is how an installed plugin package works with no code in the host application: the
    client subscribes to the union of what every plugin returns, as if the application had
    called :meth:`cmcsync.Client.subscribe` for each pair.

    :param client: the client being started.

    **Thread**: the thread that calls :meth:`cmcsync.Client.start`, before it returns.

    **When**: once per :meth:`~cmcsync.Client.start`, after the plugins are registered and
    before the first subscribe request; plugins registered later are not asked.

    **Returns**: an iterable of ``(channel, params)`` pairs, for example
    ``[("market@crypto_latest_price", {"crypto_ids": [1, 1027]})]``, or ``None`` for no
    subscriptions. ``channel`` is a wire or short channel name and ``params`` the keyword
    arguments :meth:`~cmcsync.Client.subscribe` takes for it.

    **Exceptions**: not isolated, unlike the other hooks: a plugin that cannot say what it
    needs is a configuration error, reported at once. A value that is not ``(channel,
    params)`` pairs of valid subscriptions makes :meth:`~cmcsync.Client.start` raise
    :class:`~cmcsync.ConfigError` naming the plugin; any other exception propagates from
    :meth:`~cmcsync.Client.start`.

    .. versionadded:: 0.1
    """


# -------------------------------------------------------------------------------------------
# Connection and subscription lifecycle
# -------------------------------------------------------------------------------------------


@hookspec
def cmcsync_on_connect(client: Client, url: str, reconnect: bool) -> None:
    """A WebSocket connection is open (the handshake succeeded; the welcome may follow).

    :param client: the client that connected.
    :param url: the URL connected to (never containing the API key).
    :param reconnect: ``False`` on a connection's first open, ``True`` when it reconnects.
        With several connections (the pool), each one's first open is ``False``.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: queued in order with the data events, so every event of the previous connection
    has been delivered before it; the replay of the wanted subscriptions may still be in
    flight (see :func:`cmcsync_on_subscription_state`).

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_disconnect(
    client: Client, code: int | None, reason: str, will_reconnect: bool
) -> None:
    """An open connection was lost or closed.

    Attempts that fail before the socket opens (a refused handshake, an unreachable host)
    do not come here: each is reported to :func:`cmcsync_on_error` as a
    :class:`cmcsync.exceptions.ConnectionFailedError`.

    :param client: the client that lost its connection.
    :param code: the WebSocket close code, or ``None`` when there was none (a network error,
        a dead connection detected by the keep-alive).
    :param reason: the server's close reason or a description of the failure.
    :param will_reconnect: whether the client will try again; ``False`` after
        :meth:`~cmcsync.Client.close`, after a fatal error such as a rejected key, and when
        ``Backoff.max_attempts`` failures in a row make the client give up.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: queued in order with the data events: after every event received on the lost
    connection, before :func:`cmcsync_on_connect` of the next one.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_subscription_state(
    client: Client,
    channel: str,
    params: Mapping[str, Any],
    state: str,
    error: SubscriptionError | None,
) -> None:
    """A subscription changed state.

    :param client: the client owning the subscription.
    :param channel: the wire channel name, e.g. ``"onchain@kline"``.
    :param params: the subscription's normalized params, the list param as a scalar.
    :param state: one of :data:`SUBSCRIPTION_STATES`: ``"pending"`` (requested, no ack yet,
        including during a replay after a reconnect), ``"active"`` (acknowledged),
        ``"rejected"`` (refused by the server) or ``"removed"`` (unsubscribed).
    :param error: the server's refusal for ``"rejected"``, otherwise ``None``.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: queued in order with the data events, as the state changes.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_gap(
    client: Client, channel: str, params: Mapping[str, Any], start_ms: int, end_ms: int
) -> None:
    """A subscription may have missed data between two times, because of a reconnect.

    The CMC stream has no replay: what was pushed while the client was not connected is
    lost. This hook tells a plugin which window to fill from another source (CMC's REST API).

    :param client: the client owning the subscription.
    :param channel: the wire channel name.
    :param params: the subscription's normalized params, the list param as a scalar.
    :param start_ms: epoch milliseconds: the server's ``ts`` of the last push received on
        the lost connection (the client's clock if none came): data may be missing from then on.
    :param end_ms: epoch milliseconds, on the client's clock, at which the server acknowledged
        the subscription again: data flows from then on.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: once per subscription that was active when a connection was lost, as soon as
    the server acknowledges it on the new connection; queued in order with the data events.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_stale(
    client: Client, channel: str, params: Mapping[str, Any], silent_for: float, action: str
) -> None:
    """A subscription has been silent for longer than its channel's cadence allows.

    The connection still answers pings, but this subscription delivers nothing. The client
    recovers in steps, reporting each one: first it subscribes again on the same connection
    (``action == "resubscribe"``); if that brings nothing either, it replaces the connection
    (``action == "reconnect"``), which replays its subscriptions and reports a gap.

    :param client: the client owning the subscription.
    :param channel: the wire channel name.
    :param params: the subscription's normalized params, the list param as a scalar.
    :param silent_for: seconds since the subscription last delivered (or was acknowledged).
    :param action: ``"resubscribe"`` or ``"reconnect"``: what the client does about it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: from the client's watchdog, when a subscription with an expected cadence
    (see :class:`cmcsync.Liveness`) has been silent for ``factor`` times that cadence;
    queued in order with the data events.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_close(client: Client) -> None:
    """The client is closing: flush and release what the plugin holds.

    :param client: the client that is closing.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: once, from :meth:`cmcsync.Client.close`, after the sockets are closed and after
    every event queued before it has been delivered; no hook is called after it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call.

    .. versionadded:: 0.1
    """


# -------------------------------------------------------------------------------------------
# Data: every event, then the event's own channel
# -------------------------------------------------------------------------------------------


@hookspec
def cmcsync_on_event(event: events.Event, client: Client) -> None:
    """Receive every data event, whatever its channel.

    :param event: the decoded event, an instance of the channel's class in
        :mod:`cmcsync.events`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event, in arrival order, before the channel's own hook (such as
    :func:`cmcsync_on_kline`) and before :meth:`cmcsync.Client.events` yields it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_crypto_latest_price(event: events.CryptoLatestPrice, client: Client) -> None:
    """Receive a ``market@crypto_latest_price`` event.

    :param event: the decoded :class:`cmcsync.events.CryptoLatestPrice`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_token_agg_event(event: events.TokenAggEvent, client: Client) -> None:
    """Receive an ``onchain@token_agg_event`` event.

    :param event: the decoded :class:`cmcsync.events.TokenAggEvent`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_transaction(event: events.Transaction, client: Client) -> None:
    """Receive an ``onchain@transaction`` event (one swap).

    :param event: the decoded :class:`cmcsync.events.Transaction`; a swap pushed twice (once
        per token of the pair) is delivered once.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_liquidity_event(event: events.LiquidityEvent, client: Client) -> None:
    """Receive an ``onchain@liquidity_event`` event (liquidity added or removed).

    :param event: the decoded :class:`cmcsync.events.LiquidityEvent`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_kline(event: events.Kline, client: Client) -> None:
    """Receive an ``onchain@kline`` event (one candle of the subscribed interval).

    :param event: the decoded :class:`cmcsync.events.Kline`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_token_metric(event: events.TokenMetric, client: Client) -> None:
    """Receive an ``onchain@token_metric`` event (a token's rolling metrics).

    :param event: the decoded :class:`cmcsync.events.TokenMetric`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_pool_metric(event: events.PoolMetric, client: Client) -> None:
    """Receive an ``onchain@pool_metric`` event (a pool's rolling metrics).

    :param event: the decoded :class:`cmcsync.events.PoolMetric`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_unique_trader(event: events.UniqueTrader, client: Client) -> None:
    """Receive an ``onchain@unique_trader`` event (unique traders over the interval).

    :param event: the decoded :class:`cmcsync.events.UniqueTrader`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_holders_metrics(event: events.HoldersMetrics, client: Client) -> None:
    """Receive an ``onchain@holders_metrics`` event (a token's holder statistics).

    :param event: the decoded :class:`cmcsync.events.HoldersMetrics`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_holder_wallet_update(event: events.HolderWalletUpdate, client: Client) -> None:
    """Receive an ``onchain@holder_wallet_update`` event (a wallet's holding changed).

    :param event: the decoded :class:`cmcsync.events.HolderWalletUpdate`.
    :param client: the client that received it.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``; never a reader thread.

    **When**: for each event of the channel, in arrival order, after
    :func:`cmcsync_on_event` has been called for it.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the event. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


# -------------------------------------------------------------------------------------------
# Trouble: bad input, failing plugins, a consumer falling behind
# -------------------------------------------------------------------------------------------


@hookspec
def cmcsync_on_error(client: Client, error: CmcsyncError) -> None:
    """Something went wrong in the background.

    Usually a frame or payload the client could not use (non-JSON, unknown channel, a payload
    that does not fit its event class): it is skipped and the connection goes on. A failed
    connection attempt comes here as a :class:`cmcsync.exceptions.ConnectionFailedError`.
    A fatal error (the key or plan rejected, retries exhausted) comes here too; the client
    stops at once, so :meth:`cmcsync.Client.wait` may raise it before this call is made.

    :param client: the client concerned.
    :param error: what happened: a :class:`cmcsync.exceptions.ProtocolError` whose ``kind``
        names the problem, or the fatal error, such as :class:`cmcsync.exceptions.AuthError`.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: queued in order with the data events, where the bad input was met.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_plugin_error(
    client: Client, plugin_name: str, hook_name: str, error: BaseException, disabled: bool
) -> None:
    """A plugin's hook implementation raised.

    :param client: the client whose plugin failed.
    :param plugin_name: the name the failing plugin is registered under.
    :param hook_name: the hook it failed in, e.g. ``"cmcsync_on_kline"``.
    :param error: the exception it raised.
    :param disabled: ``True`` when this failure switched the plugin off (it had failed
        ``DispatchConfig.max_plugin_failures`` times in a row); it gets no more calls.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: right after the failing call, before the next plugin gets the event; the
    failing plugin itself is told too unless this failure switched it off.

    **Returns**: ``None``.

    **Exceptions**: logged on the ``cmcsync.dispatch`` logger and otherwise ignored: they are
    not reported through this hook again and do not count towards switching a plugin off.

    .. versionadded:: 0.1
    """


@hookspec
def cmcsync_on_slow_consumer(client: Client, depth: int, capacity: int) -> None:
    """The plugins are falling behind: the event queue is filling up.

    :param client: the client whose queue is filling.
    :param depth: the events waiting in the queue when it was noticed.
    :param capacity: ``DispatchConfig.queue_size``, where the overflow policy starts.

    **Thread**: the dispatcher thread ``cmcsync-dispatch``.

    **When**: when the queue first holds ``DispatchConfig.slow_fraction`` of its capacity
    or more, before it overflows; again only after it has drained below half. The call goes
    ahead of the queued events, so it is not delayed by the backlog it reports.

    **Returns**: ``None``.

    **Exceptions**: caught, logged on the ``cmcsync.dispatch`` logger with the plugin and hook
    names, counted and passed to :func:`cmcsync_on_plugin_error`; the other plugins still get
    the call. A plugin that raises ``DispatchConfig.max_plugin_failures`` times in a row, in
    any hook, is switched off.

    .. versionadded:: 0.1
    """
