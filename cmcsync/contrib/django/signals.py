"""Django signals sent for the client's hooks, so project code can use ``@receiver``.

::

    from django.dispatch import receiver
    from cmcsync.events import CryptoLatestPrice
    from cmcsync.contrib.django.signals import event_received

    @receiver(event_received, sender=CryptoLatestPrice)
    def store_price(sender, event, client, **kwargs):
        Price.objects.update_or_create(crypto_id=event.crypto_id, defaults={"usd": event.price})

Every signal is sent on the client's dispatcher thread ``cmcsync-dispatch`` (never on a
connection's reader thread), in the order the hooks fire. ``sender`` is the event's class
for :data:`event_received` (so ``sender=`` filters by channel) and the client's class for the
others; the keyword arguments are the hook's.

A receiver that raises is logged with its traceback by Django (the ``django.dispatch``
logger); the other receivers and the stream go on. Database connections the receivers use on the
dispatcher thread are recycled as Django does around a request: stale ones are closed before
and after each signal (``CONN_MAX_AGE`` applies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import close_old_connections  # type: ignore[import-untyped]
from django.dispatch import Signal  # type: ignore[import-untyped]

from cmcsync.client import Client
from cmcsync.events import Event
from cmcsync.exceptions import CmcsyncError, SubscriptionError
from cmcsync.hookspecs import hookimpl

__all__ = [
    "SignalBridge",
    "connected",
    "disconnected",
    "error",
    "event_received",
    "gap",
    "subscription_state",
]

#: A data event arrived. ``sender``: the event's class (e.g. ``CryptoLatestPrice``);
#: arguments: ``event``, ``client``. From the ``cmcsync_on_event`` hook.
event_received = Signal()
#: The connection opened. Arguments: ``client``, ``url`` (never holding the key),
#: ``reconnect`` (``False`` the first time). From ``cmcsync_on_connect``.
connected = Signal()
#: The connection was lost or closed. Arguments: ``client``, ``code`` (the close code or
#: ``None``), ``reason``, ``will_reconnect``. From ``cmcsync_on_disconnect``.
disconnected = Signal()
#: A subscription changed state. Arguments: ``client``, ``channel``, ``params``, ``state``
#: (``"pending"``, ``"active"``, ``"rejected"``, ``"removed"``), ``error`` (the refusal, for
#: ``"rejected"``). From ``cmcsync_on_subscription_state``.
subscription_state = Signal()
#: A subscription may have missed data during a reconnect. Arguments: ``client``,
#: ``channel``, ``params``, ``start_ms``, ``end_ms`` (epoch ms). From ``cmcsync_on_gap``.
gap = Signal()
#: Something went wrong in the background (a frame that could not be used, or the fatal
#: error that stopped the client). Arguments: ``client``, ``error``. From ``cmcsync_on_error``.
error = Signal()
# The hook's argument is called ``error`` too; the method reaches the signal by this name.
_error_signal = error


def _send(signal: Any, sender: object, **kwargs: Any) -> None:
    if not signal.has_listeners(sender):
        return
    close_old_connections()
    try:
        # send_robust: a receiver's exception is logged by Django (logger django.dispatch)
        # and must not keep the other receivers, or the next events, from running.
        signal.send_robust(sender, **kwargs)
    finally:
        close_old_connections()


class SignalBridge:
    """The plugin that sends this module's signals; the Django app registers it in its client."""

    def __repr__(self) -> str:
        return "<cmcsync Django SignalBridge>"

    @hookimpl
    def cmcsync_on_event(self, event: Event, client: Client) -> None:
        """Send :data:`event_received`."""
        _send(event_received, type(event), event=event, client=client)

    @hookimpl
    def cmcsync_on_connect(self, client: Client, url: str, reconnect: bool) -> None:
        """Send :data:`connected`."""
        _send(connected, type(client), client=client, url=url, reconnect=reconnect)

    @hookimpl
    def cmcsync_on_disconnect(
        self, client: Client, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        """Send :data:`disconnected`."""
        _send(
            disconnected,
            type(client),
            client=client,
            code=code,
            reason=reason,
            will_reconnect=will_reconnect,
        )

    @hookimpl
    def cmcsync_on_subscription_state(
        self,
        client: Client,
        channel: str,
        params: Mapping[str, Any],
        state: str,
        error: SubscriptionError | None,
    ) -> None:
        """Send :data:`subscription_state`."""
        _send(
            subscription_state,
            type(client),
            client=client,
            channel=channel,
            params=params,
            state=state,
            error=error,
        )

    @hookimpl
    def cmcsync_on_gap(
        self, client: Client, channel: str, params: Mapping[str, Any], start_ms: int, end_ms: int
    ) -> None:
        """Send :data:`gap`."""
        _send(
            gap,
            type(client),
            client=client,
            channel=channel,
            params=params,
            start_ms=start_ms,
            end_ms=end_ms,
        )

    @hookimpl
    def cmcsync_on_error(self, client: Client, error: CmcsyncError) -> None:
        """Send :data:`error`."""
        _send(_error_signal, type(client), client=client, error=error)
