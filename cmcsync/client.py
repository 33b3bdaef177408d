"""The :class:`Client`: lifecycle, the subscribe API, stats and waiting.

The client owns a :class:`~cmcsync._connection.Connection` (socket, reader thread,
keep-alive, reconnects), the :class:`~cmcsync.subscriptions.Registry` of wanted
subscriptions, the codec that turns frames into typed events, and the dispatcher thread that
hands those events to plugins and to :meth:`Client.events`. It is the connection's
:class:`~cmcsync._connection.Handler`: the envelope handling below runs on the reader thread
and never calls user code; hooks are queued for the dispatcher thread.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

from cmcsync import _protocol
from cmcsync._codec import Codec
from cmcsync._connection import (
    OPCODE_BINARY,
    OPCODE_TEXT,
    Connection,
    Frame,
    check_url,
    redact_url,
)
from cmcsync._dedupe import Deduper
from cmcsync._dispatch import Dispatcher
from cmcsync.channels import CHANNELS, Channel, get_channel
from cmcsync.config import Backoff, DispatchConfig, Timeouts
from cmcsync.events import Event
from cmcsync.exceptions import (
    ClientClosedError,
    CmcsyncError,
    CmcsyncTimeoutError,
    ConfigError,
    ConnectionFailedError,
    ProtocolError,
    SubscriptionError,
)
from cmcsync.plugins import make_plugin_manager
from cmcsync.plugins import register as register_plugin
from cmcsync.subscriptions import (
    Registry,
    Requests,
    Subscription,
    SubscriptionState,
    expand,
)

__all__ = ["Client", "ClientState"]

log = logging.getLogger("cmcsync.client")

#: Subscriptions one connection may hold until the server says otherwise (its ``sub_limit``).
DEFAULT_SUB_LIMIT = 100

# Ping intervals outside this range in a welcome are ignored (milliseconds).
_PING_RANGE_MS = (100, 300_000)


class ClientState(str, enum.Enum):
    """The lifecycle of a :class:`Client`."""

    #: Built; :meth:`Client.start` not called yet.
    NEW = "new"
    #: Started: connecting, connected, or waiting to reconnect.
    RUNNING = "running"
    #: Closed by :meth:`Client.close`; final.
    CLOSED = "closed"
    #: Stopped by a fatal error, which :meth:`Client.wait` re-raises; final.
    FAILED = "failed"


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Threads do not survive fork(): a client inherited by a child would hang for ever.
    for client in list(_live_clients):
        client._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A streaming client for the CoinMarketCap WebSocket API.

    :param api_key: the CMC API key; defaults to the ``CMC_PRO_API_KEY`` environment variable.
        It is sent only in the handshake header and never appears in logs, reprs or errors.
    :param url: the endpoint; defaults to :data:`cmcsync.DEFAULT_URL`.
    :param decimal: decode prices and USD values as :class:`decimal.Decimal` instead of float.
    :param plugins: plugin objects or modules to register, besides installed entry points.
    :param autoload: load plugins installed under the ``cmcsync`` entry-point group (also
        turned off by the ``CMCSYNC_DISABLE_PLUGIN_AUTOLOAD`` environment variable).
    :param backoff: reconnect timing, see :class:`cmcsync.Backoff`.
    :param timeouts: handshake, ack, keep-alive and close timeouts, see :class:`cmcsync.Timeouts`.
    :param dispatch: the queue between the socket and user code, see
        :class:`cmcsync.DispatchConfig`.
    :param sslopt: TLS options passed to the socket (e.g. ``{"ca_certs": path}``);
        certificate verification is on unless these turn it off.
    :param proxy: an HTTP proxy URL (``http://host:port``) to tunnel through with CONNECT.
    :param allow_insecure: allow a plain ``ws://`` URL to a host other than this machine.
    :param dedupe_window: how many recent swap / liquidity keys are remembered per channel
        to drop the second copy CMC pushes for the pool's other token.
    :raises ConfigError: for a missing key, a bad URL or a bad setting.
    """

    def __init__(
        self,
        api_key: str | None = None,
        url: str = _protocol.DEFAULT_URL,
        *,
        decimal: bool = False,
        plugins: Iterable[object] = (),
        autoload: bool = True,
        backoff: Backoff | None = None,
        timeouts: Timeouts | None = None,
        dispatch: DispatchConfig | None = None,
        sslopt: Mapping[str, Any] | None = None,
        proxy: str | None = None,
        allow_insecure: bool = False,
        dedupe_window: int = 10_000,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(_protocol.API_KEY_ENV, "")
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(
                f"no API key: pass api_key=... or set the {_protocol.API_KEY_ENV} "
                "environment variable",
                param="api_key",
            )
        check_url(url, allow_insecure=allow_insecure)
        self.url = url
        self.decimal = decimal
        self.timeouts = timeouts or Timeouts()
        self.backoff = backoff or Backoff()
        self.dispatch_config = dispatch or DispatchConfig()

        self.plugin_manager = make_plugin_manager(autoload=autoload, plugins=plugins)
        self._dispatcher = Dispatcher(self.plugin_manager, self, self.dispatch_config)
        self._codec = Codec(decimal=decimal)
        self._parse_float: Any = Decimal if decimal else None
        self._deduper = Deduper(window=dedupe_window)
        self._registry = Registry()
        self._requests = Requests()
        self._connection = Connection(
            url,
            key.strip(),
            self,
            backoff=self.backoff,
            timeouts=self.timeouts,
            batch_size=self.dispatch_config.batch_size,
            sslopt=sslopt,
            proxy=proxy,
            next_id=self._requests.next_id,
        )

        self._state = ClientState.NEW
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._fatal: CmcsyncError | None = None
        self._forked = False
        self._sub_limit = DEFAULT_SUB_LIMIT
        # Gap tracking: when each previously active subscription stopped receiving.
        self._last_frame_ms = 0
        self._outage: dict[Subscription, int] = {}
        self._identities: dict[tuple[str, tuple[tuple[str, Any], ...]], Subscription | None] = {}

        # Counters, written on the reader thread only.
        self._events_by_channel: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self._malformed: dict[str, int] = {}
        self._reconnects = 0
        self._acks = 0
        self._pongs = 0
        self._server_errors = 0
        self._unmatched = 0
        self._gaps = 0
        self._tap: Callable[[float, str | bytes], None] | None = None
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"<cmcsync.Client {redact_url(self.url)} {self._state.value}>"

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def state(self) -> ClientState:
        """Where the client stands in its lifecycle."""
        return self._state

    @property
    def connected(self) -> bool:
        """Whether a socket to the server is open right now."""
        return self._connection.open

    def start(self, *, connect: bool = True) -> Client:
        """Start the background threads and connect; return at once.

        Subscriptions declared by plugins (``cmcsync_subscriptions``) are registered here
        and sent as soon as the socket opens. Calling it again does nothing.

        :param connect: ``False`` starts only the dispatcher, for a client fed recorded
            frames with :meth:`feed` (replay) instead of a socket.

        :raises ClientClosedError: if the client was closed.
        :raises ConfigError: if a plugin declares an invalid subscription.
        """
        with self._state_lock:
            self._check_usable()
            if self._state is not ClientState.NEW:
                return self
            declared = self._declared_subscriptions()
            self._state = ClientState.RUNNING
        if declared:
            self._notify_states(self._registry.add(declared), SubscriptionState.PENDING)
        self._dispatcher.start()
        if connect:
            self._connection.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Close the socket and join every thread the client started. Idempotent.

        Events already queued are still delivered to plugins, within ``timeout``.

        :param timeout: seconds to wait for each thread; defaults to ``timeouts.close``.
        """
        with self._state_lock:
            if self._state in (ClientState.CLOSED,):
                return
            if self._state is not ClientState.FAILED:
                self._state = ClientState.CLOSED
        limit = self.timeouts.close if timeout is None else timeout
        if not self._forked:
            self._connection.close(limit)
            self._dispatcher.close(limit)
        self._stopped.set()
        self._registry.wake()
        _live_clients.discard(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client stops.

        :returns: ``True`` once it is closed, ``False`` if ``timeout`` passed first.
        :raises CmcsyncError: the fatal error that stopped it (e.g. :class:`AuthError`).
        """
        stopped = self._stopped.wait(timeout)
        if self._fatal is not None:
            raise self._fatal
        return stopped

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until a socket is open.

        :raises CmcsyncTimeoutError: if none opened within ``timeout`` seconds.
        :raises CmcsyncError: the fatal error, if the client stopped.
        """
        self._ensure_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._connection.open:
            if self._fatal is not None:
                raise self._fatal
            if self._stopped.is_set():
                raise ClientClosedError("the client is closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CmcsyncTimeoutError(f"not connected within {timeout} s")
            self._connected.wait(0.05 if remaining is None else min(remaining, 0.05))

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        *,
        wait: bool = True,
        timeout: float | None = None,
        **params: Any,
    ) -> list[Subscription]:
        """Subscribe to a channel; one subscription per element of its list param.

        The subscriptions stay wanted until unsubscribed: they are sent again after every
        reconnect. Starts the client if needed.

        :param channel: the channel's wire name (``market@crypto_latest_price``) or short
            name (``crypto_latest_price``).
        :param wait: wait for the server's ack.
        :param timeout: seconds to wait for the ack; defaults to ``timeouts.ack``.
        :param params: the channel's params, e.g. ``crypto_ids=[1, 1027]``.
        :returns: the subscriptions, normalized.
        :raises ConfigError: for an unknown channel or a missing or invalid param, before
            anything is sent; or when the subscriptions would pass the connection's budget.
        :raises SubscriptionError: if the server refused it, with its ``code``, ``category``,
            ``error_message`` and ``detail``. Refused subscriptions are no longer wanted.
        :raises CmcsyncTimeoutError: if no ack came in time; the subscriptions stay wanted.
        """
        self._check_usable()
        row = get_channel(channel)
        subs = expand(row, params)
        self._dispatcher.enable_iterator()
        new = [s for s in subs if s not in self._registry]
        if len(self._registry) + len(new) > self._sub_limit:
            raise ConfigError(
                f"subscribing would hold {len(self._registry) + len(new)} subscriptions; "
                f"one connection holds at most {self._sub_limit} (the server's sub_limit)",
                param=row.list_param,
            )
        added = self._registry.add(subs)
        self._notify_states(added, SubscriptionState.PENDING)
        self._ensure_started()
        if added and self._connection.open:
            self._send_subscribe(added)
        if wait:
            self._wait_acks(subs, timeout)
        return subs

    def unsubscribe(
        self, channel: str, *, wait: bool = True, timeout: float | None = None, **params: Any
    ) -> list[Subscription]:
        """Unsubscribe; with no params, from the whole channel.

        :returns: the subscriptions that were wanted and are not any more.
        :raises ConfigError: for an unknown channel or invalid params.
        :raises SubscriptionError: if the server refused the request.
        :raises CmcsyncTimeoutError: if no ack came in time (they are no longer wanted anyway).
        """
        self._check_usable()
        row = get_channel(channel)
        if params:
            subs = expand(row, params)
            removed = self._registry.discard(subs)
            payloads: list[dict[str, Any] | None] = [
                payload for _, payload, _ in _batches(subs, self._sub_limit)
            ]
        else:
            removed = self._registry.discard_channel(row.name)
            payloads = [None]
        self._forget(removed)
        requests = []
        if self._connection.open:
            for payload in payloads:
                request = self._requests.open("unsubscribe", row.name, payload)
                text = _protocol.unsubscribe_request(request.id, row.name, payload)
                if self._connection.send(text):
                    requests.append(request)
                else:
                    self._requests.resolve(request.id)
        if wait:
            self._wait_requests(requests, timeout)
        return removed

    def unsubscribe_all(self, *, wait: bool = True, timeout: float | None = None) -> list[Subscription]:
        """Unsubscribe from everything.

        :returns: the subscriptions that were wanted.
        """
        self._check_usable()
        removed = self._registry.clear()
        self._forget(removed)
        if self._connection.open:
            request = self._requests.open("unsubscribe_all")
            if self._connection.send(_protocol.unsubscribe_all_request(request.id)):
                if wait:
                    self._wait_requests([request], timeout)
            else:
                self._requests.resolve(request.id)
        return removed

    def subscriptions(self) -> dict[Subscription, SubscriptionState]:
        """Every wanted subscription and its state with the server."""
        return self._registry.snapshot()

    # --- events, plugins, stats -----------------------------------------------------------

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate over data events as they arrive, in arrival order.

        Events are kept for the iterator from the first :meth:`subscribe` or :meth:`events`
        call on. Starts the client if needed.

        :param timeout: stop iterating once no event has come for this many seconds;
            ``None`` waits for ever (until :meth:`close`).
        :raises CmcsyncError: the fatal error, if the client stops because of one.
        """
        self._check_usable()
        self._dispatcher.enable_iterator()
        self._ensure_started()
        return self._dispatcher.iterate(timeout)

    def tap_frames(self, callback: Callable[[float, str | bytes], None] | None) -> None:
        """Have ``callback(received_at, frame)`` called with every raw frame, before decoding.

        ``received_at`` is the receive time (epoch seconds); text frames come as ``str``,
        binary ones as ``bytes``. The callback runs on the reader thread, so it must be quick
        (append to a file, a list); an exception it raises is logged and the frame is still
        processed. ``None`` removes the tap. Used by ``cmcsync record``.
        """
        self._tap = callback

    def feed(self, frames: Iterable[str | bytes]) -> None:
        """Process frames as if the server had sent them, without a socket (replay).

        Data frames are decoded, deduplicated and handed to the plugins and to
        :meth:`events` exactly as live ones; acks, pongs and welcomes are read as usual.
        Call :meth:`start` with ``connect=False`` first. Used by ``cmcsync replay``.
        """
        self._check_usable()
        batch: list[Frame] = []
        for frame in frames:
            if isinstance(frame, str):
                batch.append((OPCODE_TEXT, frame.encode("utf-8")))
            else:
                batch.append((OPCODE_BINARY, bytes(frame)))
        self._process(batch, None)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module; return its name.

        :raises ConfigError: if a ``cmcsync_*`` hook is misspelt or has wrong arguments,
            naming the plugin and the hook.
        """
        return register_plugin(self.plugin_manager, plugin, name)

    def stats(self) -> dict[str, Any]:
        """Counters and state, for monitoring. Never contains the API key."""
        conn = self._connection
        return {
            "state": self._state.value,
            "connection": conn.state.value,
            "url": redact_url(self.url),
            "connects": conn.connects,
            "reconnects": self._reconnects,
            "failed_attempts": conn.failed_attempts,
            "last_close_code": conn.last_close_code,
            "last_close_reason": conn.last_close_reason,
            "frames_received": conn.frames_received,
            "bytes_received": conn.bytes_received,
            "frames_sent": conn.frames_sent,
            "pings_sent": conn.pings_sent,
            "pongs": self._pongs,
            "acks": self._acks,
            "server_errors": self._server_errors,
            "events": sum(self._events_by_channel.values()),
            "events_by_channel": dict(self._events_by_channel),
            "malformed": sum(self._malformed.values()),
            "malformed_by_kind": dict(self._malformed),
            "duplicates_dropped": self._deduper.dropped,
            "unmatched_events": self._unmatched,
            "gaps": self._gaps,
            "sub_limit": self._sub_limit,
            "subscriptions": self._registry.counts(),
            "dispatch": self._dispatcher.stats(),
        }

    # --- Handler: called on the reader thread ---------------------------------------------

    def on_open(self, conn: Connection, reconnect: bool) -> None:
        self._connected.set()
        if reconnect:
            self._reconnects += 1
        self._dispatcher.notify(
            "cmcsync_on_connect", client=self, url=redact_url(self.url), reconnect=reconnect
        )
        wanted = self._registry.reset_pending()
        if wanted:
            log.info("replaying %d subscriptions", len(wanted))
            self._send_subscribe(wanted)

    def on_close(
        self, conn: Connection, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        self._connected.clear()
        self._requests.fail_all(
            ConnectionFailedError(_protocol.describe_close(code, reason), close_code=code)
        )
        snapshot = self._registry.snapshot()
        # Data may have been missed from the last frame the connection delivered.
        start = self._last_frame_ms or _now_ms()
        for sub, state in snapshot.items():
            if state is SubscriptionState.ACTIVE:
                self._outage.setdefault(sub, start)
        changed = [s for s, st in snapshot.items() if st is not SubscriptionState.PENDING]
        self._registry.reset_pending()
        self._notify_states(changed, SubscriptionState.PENDING)
        self._dispatcher.notify(
            "cmcsync_on_disconnect",
            client=self,
            code=code,
            reason=reason,
            will_reconnect=will_reconnect,
        )

    def on_fatal(self, conn: Connection, error: CmcsyncError) -> None:
        with self._state_lock:
            if self._state is ClientState.RUNNING:
                self._state = ClientState.FAILED
        self._fatal = error
        self._requests.fail_all(error)
        self._dispatcher.notify("cmcsync_on_error", client=self, error=error)
        self._dispatcher.finish(error)
        self._stopped.set()
        self._registry.wake()

    def on_frames(self, conn: Connection, frames: Sequence[Frame]) -> None:
        self._process(frames, conn)

    def _process(self, frames: Sequence[Frame], conn: Connection | None) -> None:
        self._last_frame_ms = _now_ms()
        tap = self._tap
        if tap is not None:
            received_at = self._last_frame_ms / 1000.0
            for opcode, payload in frames:
                try:
                    tap(received_at, payload.decode("utf-8", "replace") if opcode == OPCODE_TEXT else payload)
                except Exception:  # noqa: BLE001 - a broken tap must not cost the frame
                    log.exception("frame tap failed")
        events: list[Event] = []
        for opcode, payload in frames:
            try:
                if opcode != OPCODE_TEXT:
                    raise ProtocolError(
                        f"binary frame of {len(payload)} bytes; CMC sends JSON text",
                        kind="binary",
                    )
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("text frame is not valid UTF-8", kind="not_utf8") from None
                message = _protocol.parse_frame(text, parse_float=self._parse_float)
                kind = message["type"]
                if kind == "data":
                    event = self._on_data(message)
                    if event is not None:
                        events.append(event)
                elif kind == "ack":
                    self._on_ack(message)
                elif kind == "error":
                    self._on_error(message)
                elif kind == "pong":
                    self._pongs += 1
                elif kind == "welcome":
                    if conn is not None:
                        self._on_welcome(conn, message)
                else:
                    raise ProtocolError(f"unknown message type {kind!r}", kind="unknown_type")
            except ProtocolError as exc:
                self._malformed_frame(exc)
        if events:
            self._dispatcher.submit(events)

    # --- envelope handling (reader thread) --------------------------------------------------

    def _on_data(self, message: Mapping[str, Any]) -> Event | None:
        name = message.get("channel")
        row = CHANNELS.get(name) if isinstance(name, str) else None
        if row is None:
            if not isinstance(name, str):
                raise ProtocolError("data push without a channel", kind="missing_field")
            raise ProtocolError(f"data push for unknown channel {name!r}", kind="unknown_channel")
        params = message.get("params")
        ts = message.get("ts")
        if not isinstance(params, dict):
            raise ProtocolError(f"{name} push without params", kind="missing_field")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise ProtocolError(f"{name} push without an integer ts", kind="missing_field")
        if "data" not in message:
            raise ProtocolError(f"{name} push without data", kind="missing_field")
        event = self._codec.decode(row, params, message["data"], ts)
        if row.dedupe_key is not None and self._deduper.is_duplicate(row, event):
            return None
        sub = self._identify(row, params)
        if sub is None or self._registry.state(sub) is None:
            # Not one of ours (params echoed in an unexpected form, or a push that crossed an
            # unsubscribe): delivered all the same, since dropping data silently is worse.
            self._unmatched += 1
        self._events_by_channel[row.name] += 1
        return event

    def _identify(self, row: Channel, params: Mapping[str, Any]) -> Subscription | None:
        """The subscription a push belongs to; cached, since every push repeats its params."""
        try:
            key = (row.name, tuple(params.items()))
            return self._identities[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value in the echo: not a params echo we know
            return None
        scalar = row.scalar_form(params)
        sub = Subscription.of(row.name, scalar) if scalar is not None else None
        if len(self._identities) >= 100_000:
            self._identities.clear()
        self._identities[key] = sub
        return sub

    def _on_ack(self, message: Mapping[str, Any]) -> None:
        self._acks += 1
        limit = message.get("sub_limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self._sub_limit = limit
        code = message.get("code", 0)
        rid = _protocol.request_id(message)
        if code not in (0, None, "0"):
            # Defensive: CMC reports failures as error envelopes, but an ack with a non-zero
            # code is a refusal all the same.
            self._on_error({"id": rid, "status": {"error_code": code, "error_message": message.get("msg")}})
            return
        request = self._requests.resolve(rid, answer=message) if rid is not None else None
        if request is not None and request.method == "subscribe":
            changed = self._registry.set_state(request.subs, SubscriptionState.ACTIVE)
            self._notify_states(changed, SubscriptionState.ACTIVE)
            end = _now_ms()
            for sub in changed:
                start = self._outage.pop(sub, None)
                if start is not None:
                    self._gaps += 1
                    self._dispatcher.notify(
                        "cmcsync_on_gap",
                        client=self,
                        channel=sub.channel,
                        params=sub.params_dict,
                        start_ms=start,
                        end_ms=end,
                    )

    def _on_error(self, message: Mapping[str, Any]) -> None:
        self._server_errors += 1
        base = _protocol.server_error(message)
        rid = _protocol.request_id(message)
        request = self._requests.get(rid) if rid is not None else None
        if request is None:
            log.warning("server error not tied to a request: %s", base)
            self._dispatcher.notify("cmcsync_on_error", client=self, error=base)
            return
        error = SubscriptionError(
            base.code,
            base.category,
            base.error_message,
            base.detail,
            channel=request.channel,
            params=request.params,
        )
        self._requests.resolve(request.id, error=error)
        if request.method == "subscribe":
            log.warning("subscription refused: %s", error)
            changed = self._registry.set_state(request.subs, SubscriptionState.REJECTED, error)
            self._notify_states(changed, SubscriptionState.REJECTED, error)

    def _on_welcome(self, conn: Connection, message: Mapping[str, Any]) -> None:
        interval = message.get("ping_interval_ms")
        low, high = _PING_RANGE_MS
        if isinstance(interval, (int, float)) and not isinstance(interval, bool):
            if low <= interval <= high:
                conn.set_ping_interval(float(interval) / 1000.0)
                return
        if interval is not None:
            log.warning("ignoring welcome ping_interval_ms=%r", interval)

    def _malformed_frame(self, error: ProtocolError) -> None:
        first = error.kind not in self._malformed
        self._malformed[error.kind] = self._malformed.get(error.kind, 0) + 1
        # Once per kind at WARNING, so a stream of garbage cannot flood the log.
        log.log(logging.WARNING if first else logging.DEBUG, "skipped a frame: %s", error)
        self._dispatcher.notify("cmcsync_on_error", client=self, error=error)

    # --- helpers --------------------------------------------------------------------------

    def _send_subscribe(self, subs: Sequence[Subscription]) -> None:
        for channel, payload, members in _batches(subs, self._sub_limit):
            request = self._requests.open("subscribe", channel, payload, members)
            if not self._connection.send(_protocol.subscribe_request(request.id, channel, payload)):
                # The socket went away; the replay after the reconnect sends them again.
                self._requests.resolve(request.id)
                return

    def _wait_acks(self, subs: Sequence[Subscription], timeout: float | None) -> None:
        limit = self.timeouts.ack if timeout is None else timeout
        deadline = time.monotonic() + limit
        settled = self._registry.wait_settled(
            subs, deadline, stop=lambda: self._stopped.is_set() or self._fatal is not None
        )
        if self._fatal is not None:
            raise self._fatal
        if self._stopped.is_set():
            raise ClientClosedError("the client was closed while waiting for an ack")
        if not settled:
            raise CmcsyncTimeoutError(
                f"no ack for {len(subs)} subscription(s) of {subs[0].channel} within {limit} s; "
                "they stay wanted and are sent again after a reconnect"
            )
        rejected = [s for s in subs if self._registry.state(s) is SubscriptionState.REJECTED]
        if rejected:
            error = self._registry.error(rejected[0])
            self._registry.discard(rejected)
            if isinstance(error, CmcsyncError):
                raise error
            raise SubscriptionError(None, None, "subscription refused", channel=subs[0].channel)

    def _wait_requests(self, requests: Sequence[Any], timeout: float | None) -> None:
        limit = self.timeouts.ack if timeout is None else timeout
        deadline = time.monotonic() + limit
        for request in requests:
            if not request.done.wait(max(deadline - time.monotonic(), 0.0)):
                raise CmcsyncTimeoutError(f"no ack for {request.method} within {limit} s")
            if isinstance(request.error, SubscriptionError):
                raise request.error
            # A connection lost meanwhile took the subscription with it: nothing to undo.

    def _notify_states(
        self,
        subs: Iterable[Subscription],
        state: SubscriptionState,
        error: BaseException | None = None,
    ) -> None:
        for sub in subs:
            self._dispatcher.notify(
                "cmcsync_on_subscription_state",
                client=self,
                channel=sub.channel,
                params=sub.params_dict,
                state=state.value,
                error=error,
            )

    def _forget(self, removed: Sequence[Subscription]) -> None:
        for sub in removed:
            self._outage.pop(sub, None)
        self._notify_states(removed, SubscriptionState.REMOVED)

    def _declared_subscriptions(self) -> list[Subscription]:
        declared: list[Subscription] = []
        caller = self.plugin_manager.hook.cmcsync_subscriptions
        for impl in caller.get_hookimpls():
            name = impl.plugin_name
            try:
                result = impl.function(**({"client": self} if "client" in impl.argnames else {}))
                for channel, params in result or ():
                    declared.extend(expand(get_channel(channel), params))
            except ConfigError as exc:
                raise ConfigError(
                    f"plugin {name!r} declared an invalid subscription: {exc}", param=exc.param
                ) from exc
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"plugin {name!r}: cmcsync_subscriptions must return (channel, params) "
                    f"pairs: {exc}"
                ) from exc
        return declared

    def _ensure_started(self) -> None:
        if self._state is ClientState.NEW:
            self.start()

    def _check_usable(self) -> None:
        if self._forked:
            raise ClientClosedError(
                "this client was started in a parent process before fork(); its threads and "
                "socket do not exist here. Create a new Client in the child process."
            )
        if self._state is ClientState.CLOSED:
            raise ClientClosedError("the client is closed; create a new one")
        if self._state is ClientState.FAILED and self._fatal is not None:
            raise self._fatal


def _now_ms() -> int:
    return int(time.time() * 1000)


def _batches(
    subs: Iterable[Subscription], limit: int
) -> list[tuple[str, dict[str, Any], list[Subscription]]]:
    """Group subscriptions into few requests: one per channel and scalar params, the list
    param as an array of at most ``limit`` elements. Returns (channel, params, members)."""
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Subscription]] = {}
    for sub in subs:
        list_param = CHANNELS[sub.channel].list_param
        scalars = tuple((k, v) for k, v in sub.params if k != list_param)
        groups.setdefault((sub.channel, scalars), []).append(sub)
    out = []
    for (channel, scalars), members in groups.items():
        list_param = CHANNELS[channel].list_param
        for start in range(0, len(members), limit):
            chunk = members[start : start + limit]
            payload = {**dict(scalars), list_param: [dict(s.params)[list_param] for s in chunk]}
            out.append((channel, payload, chunk))
    return out
