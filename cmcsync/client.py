"""The :class:`Client`: lifecycle, the subscribe API, stats and waiting.

The client owns the :class:`~cmcsync.subscriptions.Registry` of wanted subscriptions, the
dispatcher thread that hands events to plugins and to :meth:`Client.events`, and an engine
(:mod:`cmcsync._engine`) that runs a pool of connections, each with its own reader thread,
keep-alive and reconnects. Everything here runs on the caller's thread.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from cmcsync import _protocol
from cmcsync._connection import OPCODE_BINARY, OPCODE_TEXT, Frame, check_url, redact_url
from cmcsync._dispatch import Dispatcher
from cmcsync._engine import Engine
from cmcsync._frames import DEFAULT_MAX_FRAME_BYTES
from cmcsync.channels import CHANNELS, get_channel
from cmcsync.config import Backoff, DispatchConfig, Liveness, Timeouts
from cmcsync.events import Event
from cmcsync.exceptions import (
    ClientClosedError,
    CmcsyncError,
    CmcsyncTimeoutError,
    ConfigError,
    ConnectionFailedError,
    SubscriptionError,
)
from cmcsync.plugins import make_plugin_manager
from cmcsync.plugins import register as register_plugin
from cmcsync.subscriptions import (
    Registry,
    Request,
    Requests,
    Subscription,
    SubscriptionState,
    expand,
)

__all__ = ["Client", "ClientState"]

log = logging.getLogger("cmcsync.client")


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
    :param max_connections: the most connections the client opens; subscriptions are
        spread over as many as they need, ``sub_limit`` (100) each. CMC allows 10 per key.
    :param max_frame_bytes: the largest frame (or fragmented message) a connection accepts,
        in bytes; 1 MiB by default. A larger one is refused from its header, before its
        payload is read: the connection is closed with 1009 and replaced (its subscriptions
        are sent again), and the frame is counted as malformed, kind ``too_large``.
    :param liveness: how silent subscriptions are detected and recovered, see
        :class:`cmcsync.Liveness`.
    :param iterate: when :meth:`events` starts keeping events. ``True``: from :meth:`start`.
        ``None`` (the default): from the first :meth:`subscribe` if no plugin takes data
        events (a script), else from the first :meth:`events` call (an app whose plugins
        consume the data keeps no events in memory for an iterator nobody reads).
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
        max_connections: int = 10,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        liveness: Liveness | None = None,
        iterate: bool | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(_protocol.API_KEY_ENV, "")
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(
                f"no API key: pass api_key=... or set the {_protocol.API_KEY_ENV} "
                "environment variable",
                param="api_key",
            )
        check_url(url, allow_insecure=allow_insecure)
        if (
            isinstance(max_frame_bytes, bool)
            or not isinstance(max_frame_bytes, int)
            or max_frame_bytes < 1
        ):
            raise ConfigError(
                f"max_frame_bytes must be a positive integer, not {max_frame_bytes!r}",
                param="max_frame_bytes",
            )
        self.url = url
        self.decimal = decimal
        self.timeouts = timeouts or Timeouts()
        self.backoff = backoff or Backoff()
        self.dispatch_config = dispatch or DispatchConfig()

        self.plugin_manager = make_plugin_manager(autoload=autoload, plugins=plugins)
        self._dispatcher = Dispatcher(self.plugin_manager, self, self.dispatch_config)
        self._registry = Registry()
        self._requests = Requests()
        self._engine = Engine(
            self,
            url=url,
            api_key=key.strip(),
            decimal=decimal,
            dispatcher=self._dispatcher,
            registry=self._registry,
            requests=self._requests,
            backoff=self.backoff,
            timeouts=self.timeouts,
            batch_size=self.dispatch_config.batch_size,
            sslopt=sslopt,
            proxy=proxy,
            dedupe_window=dedupe_window,
            max_connections=max_connections,
            liveness=liveness or Liveness(),
            on_fatal=self._on_fatal,
            max_frame_bytes=max_frame_bytes,
        )

        self._state = ClientState.NEW
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self._fatal: CmcsyncError | None = None
        self._forked = False
        self._iterate = iterate
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
        """Whether a socket to the server is open right now (any, with several)."""
        return self._engine.any_open()

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
        if self._iterate:
            self._dispatcher.enable_iterator()
        self._dispatcher.start()
        if connect:
            self._engine.start()
        if declared:
            self._want(declared)
        return self

    def close(self, timeout: float | None = None) -> None:
        """Close the socket and join every thread the client started. Idempotent.

        Events already queued are still delivered to plugins, within ``timeout``.

        :param timeout: seconds to wait for each thread; defaults to ``timeouts.close``.
        """
        with self._state_lock:
            if self._state is ClientState.CLOSED:
                return
            started = self._state is not ClientState.NEW
            if self._state is not ClientState.FAILED:
                self._state = ClientState.CLOSED
        limit = self.timeouts.close if timeout is None else timeout
        if not self._forked and started:
            # A reader thread waiting for room in a full queue ("block") would hold up the
            # close for as long as the plugins take to make room for its whole batch.
            self._dispatcher.stop_waiting()
            self._engine.close(limit)
            self._dispatcher.notify("cmcsync_on_close", client=self)
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
        while not self._engine.any_open():
            if self._fatal is not None:
                raise self._fatal
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CmcsyncTimeoutError(f"not connected within {timeout} s")
            # Woken at once by close() or a fatal error; otherwise re-checks a few times a second.
            if self._stopped.wait(0.05 if remaining is None else min(remaining, 0.05)):
                if self._fatal is not None:
                    raise self._fatal
                raise ClientClosedError("the client is closed")

    def ping(self, timeout: float = 5.0) -> float:
        """Send a JSON ping on the first open connection and wait for its pong.

        The pong is matched to the ping by its id, so the keep-alive's own pings cannot
        answer it. Does not start the client: call :meth:`wait_connected` first.

        :param timeout: seconds to wait for the pong.
        :returns: the round-trip time in seconds, from sending the ping to reading the pong.
        :raises ConfigError: if ``timeout`` is not a positive number.
        :raises ConnectionFailedError: if no connection is open (not started yet, or
            reconnecting), or the connection closed before the pong came.
        :raises CmcsyncTimeoutError: if no pong came within ``timeout`` seconds.
        :raises ClientClosedError: if the client is closed, or was closed while waiting.
        :raises CmcsyncError: the fatal error, if the client stopped because of one.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"ping timeout must be a positive number of seconds, not {timeout!r}",
                param="timeout",
            )
        self._check_usable()
        conn = next((c for c in self._engine.connections if c.open), None)
        if conn is None:
            raise ConnectionFailedError(
                "no connection is open to ping on (not started yet, or reconnecting)"
            )
        try:
            return conn.ping(timeout)
        except ConnectionFailedError:
            if self._fatal is None and self._state is not ClientState.CLOSED:
                raise
        # The connection went because the whole client stopped: say that instead.
        if self._fatal is not None:
            raise self._fatal
        raise ClientClosedError("the client was closed while waiting for a pong")

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
        if self._iterate is None and not self._plugins_take_data():
            self._dispatcher.enable_iterator()
        new = [s for s in subs if s not in self._registry]
        self._engine.pool.check_budget(len(new), param=row.list_param)
        self._ensure_started()
        self._want(subs)
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
            removed = self._registry.discard(expand(row, params))
        else:
            removed = self._registry.discard_channel(row.name)
        requests = self._engine.unsubscribe(row, removed, whole=not params)
        self._forget(removed)
        if wait:
            self._wait_requests(requests, timeout)
        return removed

    def unsubscribe_all(
        self, *, wait: bool = True, timeout: float | None = None
    ) -> list[Subscription]:
        """Unsubscribe from everything.

        :returns: the subscriptions that were wanted.
        """
        self._check_usable()
        removed = self._registry.clear()
        requests = self._engine.unsubscribe_all(removed)
        self._forget(removed)
        if wait:
            self._wait_requests(requests, timeout)
        return removed

    def subscriptions(self) -> dict[Subscription, SubscriptionState]:
        """Every wanted subscription and its state with the server."""
        return self._registry.snapshot()

    # --- events, plugins, stats -----------------------------------------------------------

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate over data events as they arrive, in arrival order.

        Events are kept for the iterator from the first :meth:`subscribe` on when no plugin
        takes data events, else from the first call of this method (see ``iterate`` of
        :class:`Client`). Starts the client if needed.

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
        self._engine.tap = callback

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
        self._engine.feed(batch)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module; return its name.

        :raises ConfigError: if a ``cmcsync_*`` hook is misspelt or has wrong arguments,
            naming the plugin and the hook.
        """
        return register_plugin(self.plugin_manager, plugin, name)

    def stats(self) -> dict[str, Any]:
        """Counters and state, for monitoring. Never contains the API key.

        Totals over every connection, with a ``connections`` list of per-connection counters.
        """
        return {
            "state": self._state.value,
            "url": redact_url(self.url),
            **self._engine.stats(),
            "subscriptions": self._registry.counts(),
            "dispatch": self._dispatcher.stats(),
        }

    # --- helpers --------------------------------------------------------------------------

    def _on_fatal(self, error: CmcsyncError) -> None:
        """A connection stopped for good (reader thread): the whole client stops."""
        with self._state_lock:
            if self._state is ClientState.RUNNING:
                self._state = ClientState.FAILED
            first = self._fatal is None
            if first:
                self._fatal = error
        if not first:
            return
        self._dispatcher.notify("cmcsync_on_error", client=self, error=error)
        self._dispatcher.finish(error)
        self._stopped.set()
        self._registry.wake()
        # The key is shared: the other connections would fail the same way. close() joins them.
        for conn in self._engine.connections:
            conn.request_stop()

    def _want(self, subs: Sequence[Subscription]) -> None:
        added = self._registry.add(subs)
        self._engine.notify_states(added, SubscriptionState.PENDING)
        homeless = self._engine.place(added)
        if homeless:
            self._registry.discard(homeless)
            raise ConfigError(
                f"no connection has room for {len(homeless)} more subscription(s): the budget "
                f"is {self._engine.pool.budget}",
                param=get_channel(homeless[0].channel).list_param,
            )

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
            self._engine.forget(rejected)
            if isinstance(error, CmcsyncError):
                raise error
            raise SubscriptionError(None, None, "subscription refused", channel=subs[0].channel)

    def _wait_requests(self, requests: Sequence[Request], timeout: float | None) -> None:
        limit = self.timeouts.ack if timeout is None else timeout
        deadline = time.monotonic() + limit
        for request in requests:
            if not request.done.wait(max(deadline - time.monotonic(), 0.0)):
                raise CmcsyncTimeoutError(f"no ack for {request.method} within {limit} s")
            if isinstance(request.error, SubscriptionError):
                raise request.error
            # A connection lost meanwhile took the subscription with it: nothing to undo.

    def _forget(self, removed: Sequence[Subscription]) -> None:
        self._engine.forget(removed)
        self._engine.notify_states(removed, SubscriptionState.REMOVED)

    def _declared_subscriptions(self) -> list[Subscription]:
        declared: list[Subscription] = []
        caller = self.plugin_manager.hook.cmcsync_subscriptions
        for impl in caller.get_hookimpls():
            name = impl.plugin_name
            try:
                kwargs = {"client": self} if "client" in impl.argnames else {}
                result: Any = impl.function(**kwargs)
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

    def _plugins_take_data(self) -> bool:
        hooks = self.plugin_manager.hook
        names = ["cmcsync_on_event", *(row.hook for row in CHANNELS.values())]
        return any(getattr(hooks, name).get_hookimpls() for name in names)

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
