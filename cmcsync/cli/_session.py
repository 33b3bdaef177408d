"""One live session for ``stream`` and ``record``: the client, the subscribe, the way out.

Both commands take the same channel and connection flags, connect the same way, report
connection events the same way on stderr and end with the same exit codes; only what they
do with the data differs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from typing import Any

from cmcsync._connection import redact_url
from cmcsync._protocol import describe_close
from cmcsync.channels import Channel
from cmcsync.cli._common import (
    EXIT_AUTH,
    EXIT_GAVE_UP,
    EXIT_REJECTED,
    Console,
    add_channel_arguments,
    add_connection_arguments,
    advice_for,
    api_key_from,
    config_error_usage,
    duration,
    exit_code_for,
    positive_int,
)
from cmcsync.client import Client
from cmcsync.config import Backoff, Timeouts
from cmcsync.events import Event
from cmcsync.exceptions import (
    AuthError,
    CmcsyncError,
    CmcsyncTimeoutError,
    ConfigError,
    GaveUpError,
    SubscriptionError,
)
from cmcsync.hookspecs import hookimpl
from cmcsync.subscriptions import Subscription, expand

__all__ = ["Progress", "Session", "add_session_arguments", "report_failure"]


def add_session_arguments(parser: argparse.ArgumentParser, *, channel_required: bool) -> None:
    """The flags ``stream`` and ``record`` share: channel, params, limits, connection."""
    add_channel_arguments(parser, required=channel_required)
    limits = parser.add_argument_group("limits")
    limits.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    limits.add_argument(
        "--duration",
        type=duration,
        metavar="TIME",
        help="stop after TIME of streaming, counted from the subscription's ack (10, 30s, 5m, 1h)",
    )
    limits.add_argument(
        "--timeout",
        type=duration,
        default=30.0,
        metavar="TIME",
        help="give up (exit 4) when not subscribed within TIME (default: 30s)",
    )
    add_connection_arguments(parser)
    parser.add_argument(
        "--plugins",
        action="store_true",
        help="also load the installed plugins (their hooks run, their subscriptions are made)",
    )


class Progress:
    """Reports connection events on stderr (a plugin, so it runs on the dispatcher thread)."""

    def __init__(self, console: Console, retries: int | None = None) -> None:
        self.console = console
        self.retries = retries
        #: Failed attempts since the last connection, as the client counts them at start-up.
        self.failures = 0
        self.connected_once = False
        #: Set once the command reports its own end, so no late line follows it.
        self.muted = False

    @hookimpl
    def cmcsync_on_connect(self, url: str, reconnect: bool) -> None:
        self.connected_once = True
        self.failures = 0
        if not self.muted:
            self.console.say(f"{'reconnected' if reconnect else 'connected'} to {url}")

    @hookimpl
    def cmcsync_on_disconnect(self, code: int | None, reason: str, will_reconnect: bool) -> None:
        if self.muted or not will_reconnect:
            return
        if code is None and reason:
            # A failed attempt, or a connection lost without a close frame: the reason says which.
            self.failures += 1
            last = self.retries is not None and self.failures >= self.retries
            self.console.say(reason if last else f"{reason}; trying again")
        else:
            self.console.say(f"disconnected ({describe_close(code, reason)}); reconnecting")

    @hookimpl
    def cmcsync_on_subscription_state(
        self,
        channel: str,
        params: Mapping[str, Any],
        state: str,
        error: BaseException | None,
    ) -> None:
        if state == "rejected" and self.connected_once and not self.muted:
            self.console.warn(f"the server refused {channel} {dict(params)}: {error}")

    @hookimpl
    def cmcsync_on_gap(
        self, channel: str, params: Mapping[str, Any], start_ms: int, end_ms: int
    ) -> None:
        seconds = max(end_ms - start_ms, 0) / 1000
        if not self.muted:
            self.console.say(f"{channel} {dict(params)}: data may be missing for {seconds:.1f} s")


class Session:
    """A client built from the command line, subscribed to what it names.

    :param args: the parsed flags (channel, params, connection, limits).
    :param console: where progress and errors go.
    :param row: the channel row, or ``None`` when only the plugins' subscriptions are made.
    :param params: the validated subscribe params.
    :param decimal: decode exact decimals.
    :raises UsageError: for a missing key or a bad connection flag.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        console: Console,
        row: Channel | None,
        params: Mapping[str, Any],
        *,
        decimal: bool = False,
    ) -> None:
        key, self.key_source = api_key_from(args)
        if key is None:
            raise config_error_usage(ConfigError("no API key", param="api_key"))
        console.secrets.append(key)
        self.console = console
        self.row = row
        self.params = dict(params)
        self.count = 0
        self.args = args
        self.progress = Progress(console, args.retries)
        try:
            self.client = Client(
                api_key=key,
                url=args.url,
                decimal=decimal,
                plugins=[self.progress],
                autoload=bool(args.plugins),
                backoff=Backoff(max_attempts=args.retries),
                timeouts=Timeouts(connect=min(args.timeout, 10.0)),
                proxy=args.proxy,
                allow_insecure=args.allow_insecure,
            )
        except ConfigError as exc:
            raise config_error_usage(exc) from None
        self.wanted: frozenset[Subscription] = (
            frozenset(expand(row, params)) if row is not None else frozenset()
        )

    def subscribe(self) -> None:
        """Connect and subscribe; return once the server acknowledged.

        :raises CmcsyncError: AuthError, GaveUpError, SubscriptionError or a timeout.
        """
        url = redact_url(self.args.url)
        self.console.say(f"connecting to {url} (API key from {self.key_source})")
        client = self.client
        if self.row is None:
            client.start()
            client.wait_connected(self.args.timeout)
            return
        subs = client.subscribe(self.row.name, timeout=self.args.timeout, **self.params)
        what = ", ".join(str(s.params_dict[self.row.list_param]) for s in subs)
        self.console.say(f"subscribed to {self.row.name} for {what}")

    def events(self) -> Iterator[Event]:
        """The events of the wanted subscriptions until ``--count`` or ``--duration``.

        Events of subscriptions made by plugins are left out. Ends early, raising it, on a
        fatal error (a rejected key, retries exhausted).
        """
        limit = self.args.count
        deadline = None if self.args.duration is None else time.monotonic() + self.args.duration
        while limit is None or self.count < limit:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            for event in self.client.events(timeout=1.0 if remaining is None else remaining):
                if self.wanted and not self._ours(event):
                    continue
                self.count += 1
                yield event
                if limit is not None and self.count >= limit:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
            self.client.wait(0)  # raises the fatal error if the client stopped on one

    def _ours(self, event: Event) -> bool:
        row = self.row
        if row is None or event.channel != row.name:
            return False
        scalar = row.scalar_form(event.params)
        return scalar is not None and Subscription.of(row.name, scalar) in self.wanted

    def close(self) -> None:
        """Close the client, joining its threads; no progress line is printed after."""
        self.client.close()
        self.progress.muted = True


def report_failure(console: Console, error: CmcsyncError, url: str) -> int:
    """Print why a session ended and what to do; return the exit code."""
    where = redact_url(url)
    if isinstance(error, AuthError):
        console.error(f"the server rejected the API key: {error}", advice_for(error))
        return EXIT_AUTH
    if isinstance(error, SubscriptionError):
        console.error(f"the server refused the subscription: {error}", advice_for(error))
        return EXIT_REJECTED
    if isinstance(error, GaveUpError):
        console.error(f"gave up connecting to {where}: {error}", advice_for(error))
        return EXIT_GAVE_UP
    if isinstance(error, CmcsyncTimeoutError):
        console.error(f"no subscription with {where} in time: {error}", advice_for(error))
        return EXIT_GAVE_UP
    if isinstance(error, ConfigError):
        usage = config_error_usage(error)
        console.error(usage.message, usage.hint)
        return exit_code_for(error)
    console.error(str(error), advice_for(error))
    return exit_code_for(error)
