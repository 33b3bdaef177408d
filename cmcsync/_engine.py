"""The engine behind :class:`cmcsync.Client`: connections, envelopes, replay and gaps.

The :class:`Engine` is the :class:`~cmcsync._connection.Handler` of every connection in the
client's pool. Its ``on_*`` methods run on reader threads: they read envelopes, move
subscriptions between states, decode data into events and queue everything user code must
see (events and lifecycle hooks) for the dispatcher thread. Nothing here calls user code.

The user-facing side (:meth:`Engine.subscribe_on`, :meth:`Engine.unsubscribe`...) is called
by the client on user threads; it places subscriptions on connections and sends requests.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from cmcsync import _protocol
from cmcsync._codec import MAX_EXTRA_DEPTH, Codec, deeper_than
from cmcsync._connection import OPCODE_TEXT, Connection, Frame, redact_url
from cmcsync._dedupe import Deduper
from cmcsync._dispatch import Dispatcher
from cmcsync._frames import OPCODE_TOO_LARGE
from cmcsync._pool import Pool
from cmcsync.channels import CHANNELS, Channel
from cmcsync.config import Backoff, Liveness, Timeouts
from cmcsync.events import Event
from cmcsync.exceptions import (
    CmcsyncError,
    ConnectionFailedError,
    ProtocolError,
    SubscriptionError,
)
from cmcsync.subscriptions import Registry, Request, Requests, Subscription, SubscriptionState

log = logging.getLogger("cmcsync.client")

#: Subscriptions one connection may hold until the server says otherwise (its ``sub_limit``).
DEFAULT_SUB_LIMIT = 100

#: The server's error for a full connection.
_SUBSCRIPTION_LIMIT = 2303

# "limit is 100", "limit: 100", "limit of 100" in an error_detail.
_LIMIT_IN_DETAIL = re.compile(r"limit\D{0,12}?(\d+)", re.IGNORECASE)

# Ping intervals outside this range in a welcome are ignored (milliseconds).
_PING_RANGE_MS = (100, 300_000)


def now_ms() -> int:
    """The wall clock in epoch milliseconds, the server's unit."""
    return int(time.time() * 1000)


class Engine:
    """Connections, envelope handling and subscription bookkeeping for one client."""

    def __init__(
        self,
        client: object,
        *,
        url: str,
        api_key: str,
        decimal: bool,
        dispatcher: Dispatcher,
        registry: Registry,
        requests: Requests,
        backoff: Backoff,
        timeouts: Timeouts,
        batch_size: int,
        sslopt: Mapping[str, Any] | None,
        proxy: str | None,
        dedupe_window: int,
        max_connections: int,
        liveness: Liveness,
        on_fatal: Callable[[CmcsyncError], None],
        max_frame_bytes: int,
    ) -> None:
        self._client = client
        self._url = url
        self._dispatcher = dispatcher
        self._registry = registry
        self._requests = requests
        self._codec = Codec(decimal=decimal)
        self._parse_float: Any = Decimal if decimal else None
        self._parse = _protocol.frame_parser(self._parse_float)
        self._deduper = Deduper(window=dedupe_window)
        self._backoff = backoff
        self._fatal_callback = on_fatal
        self._running = False
        # Which connections have sent their replay: a subscription placed on one of them is
        # sent at once, one placed on any other is sent by its replay. The lock makes the two
        # exclusive, so nothing is sent twice or not at all.
        self._send_lock = threading.Lock()
        self._replayed: set[int] = set()

        def make(index: int) -> Connection:
            return Connection(
                url,
                api_key,
                self,
                backoff=backoff,
                timeouts=timeouts,
                index=index,
                batch_size=batch_size,
                sslopt=sslopt,
                proxy=proxy,
                next_id=requests.next_id,
                max_frame_bytes=max_frame_bytes,
                host=dispatcher.read_host(),
            )

        self.pool: Pool[Connection] = Pool(
            make, max_connections=max_connections, sub_limit=DEFAULT_SUB_LIMIT
        )
        # Gap tracking: when each previously active subscription stopped receiving.
        self._last_frame_ms: dict[int, int] = {}
        self._last_push_ts: dict[int, int] = {}
        self._outage: dict[Subscription, int] = {}
        self._identities: dict[tuple[str, tuple[tuple[str, Any], ...]], _Seen | None] = {}
        self.tap: Callable[[float, str | bytes], None] | None = None
        # Liveness: when each active subscription last delivered, and its recovery step.
        self._liveness = liveness
        self._batch_time = 0.0
        self._last_seen: dict[Subscription, float] = {}
        self._stale: dict[Subscription, int] = {}
        self._watch_stop = threading.Event()
        self._watch_wake = threading.Event()
        self._watchdog: threading.Thread | None = None
        # Subscriptions refused with a transient server error, sent again after a backoff:
        # when (monotonic seconds), and how many refusals in a row each has had.
        self._retry_lock = threading.Lock()
        self._retry_due: dict[Subscription, float] = {}
        self._retry_failures: dict[Subscription, int] = {}

        # Counters; each is written by reader threads only.
        self.events_by_channel: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.malformed: dict[str, int] = {}
        self.reconnects = 0
        self.acks = 0
        self.pongs = 0
        self.server_errors = 0
        self.unmatched = 0
        self.gaps = 0
        self.moved = 0
        self.stale_resubscribes = 0
        self.stale_reconnects = 0

    # --- user side ------------------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        """The connections of the pool, by index."""
        return self.pool.connections

    def start(self) -> None:
        """Open connection 0 (and any the wanted subscriptions already need)."""
        self._running = True
        self.pool.ensure_first()
        for conn in self.pool.connections:
            conn.start()
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="cmcsync-watchdog", daemon=True
            )
            self._watchdog.start()

    def close(self, timeout: float) -> None:
        """Close every connection and join their threads."""
        self._running = False
        self._watch_stop.set()
        self._watch_wake.set()
        for conn in list(self.pool.connections):
            conn.close(timeout)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout)

    def any_open(self) -> bool:
        """Whether at least one socket is open."""
        return any(conn.open for conn in self.pool.connections)

    def place(self, subs: Sequence[Subscription]) -> list[Subscription]:
        """Put new subscriptions on connections and send them where a socket is open.

        :returns: the subscriptions for which no connection had room.
        """
        return self._place_and_send(subs)[1]

    def _place_and_send(
        self, subs: Sequence[Subscription], *, avoid: int | None = None
    ) -> tuple[dict[int, list[Subscription]], list[Subscription]]:
        with self._send_lock:
            placed, created, homeless = self.pool.place(subs, avoid=avoid)
            for index, members in placed.items():
                if index in self._replayed:
                    self._send_subscribe(self.pool.connections[index], members)
        if self._running:
            for conn in created:
                conn.start()
        return placed, homeless

    def unsubscribe(
        self, row: Channel, removed: Sequence[Subscription], *, whole: bool
    ) -> list[Request]:
        """Send unsubscribe requests for ``removed``; ``whole`` drops the whole channel.

        :returns: the requests sent, to wait on.
        """
        by_conn = self.pool.release(removed)
        requests: list[Request] = []
        for conn in self.pool.connections:
            if not conn.open:
                continue
            if whole:
                requests += self._send(conn, "unsubscribe", row.name, None)
            else:
                for channel, payload, _ in batches(
                    by_conn.get(conn.index, ()), self.pool.sub_limit
                ):
                    requests += self._send(conn, "unsubscribe", channel, payload)
        return requests

    def unsubscribe_all(self, subs: Sequence[Subscription]) -> list[Request]:
        """Send ``unsubscribe_all`` on every open connection."""
        self.pool.release(subs)
        requests = []
        for conn in self.pool.connections:
            if conn.open:
                requests += self._send(conn, "unsubscribe_all", None, None)
        return requests

    def forget(self, subs: Sequence[Subscription]) -> None:
        """Drop subscriptions no longer wanted: from their connection and every record."""
        self.pool.release(subs)
        with self._retry_lock:
            for sub in subs:
                self._retry_due.pop(sub, None)
                self._retry_failures.pop(sub, None)
        for sub in subs:
            self._outage.pop(sub, None)
            self._last_seen.pop(sub, None)
            self._stale.pop(sub, None)

    def feed(self, frames: Sequence[Frame]) -> None:
        """Process frames without a socket (replay)."""
        self._process(frames, None)

    def _send(
        self, conn: Connection, method: str, channel: str | None, payload: dict[str, Any] | None
    ) -> list[Request]:
        request = self._requests.open(method, channel, payload, via=conn.index)
        if method == "unsubscribe_all":
            text = _protocol.unsubscribe_all_request(request.id)
        else:
            assert channel is not None
            text = _protocol.unsubscribe_request(request.id, channel, payload)
        if conn.send(text):
            return [request]
        self._requests.resolve(request.id)
        return []

    def _send_subscribe(self, conn: Connection, subs: Sequence[Subscription]) -> None:
        for channel, payload, members in batches(subs, self.pool.sub_limit):
            request = self._requests.open("subscribe", channel, payload, members, via=conn.index)
            if not conn.send(_protocol.subscribe_request(request.id, channel, payload)):
                # The socket went away; the replay after the reconnect sends them again.
                self._requests.resolve(request.id)
                return

    # --- Handler: reader threads ----------------------------------------------------------

    def on_open(self, conn: Connection, reconnect: bool) -> None:
        if reconnect:
            self.reconnects += 1
        self.pool.restore_cap(conn.index)
        self._dispatcher.notify(
            "cmcsync_on_connect",
            client=self._client,
            url=redact_url(self._url),
            reconnect=reconnect,
        )
        with self._send_lock:
            self._replayed.add(conn.index)
            members = self.pool.members(conn.index)
            if members:
                if self._retry_due:
                    with self._retry_lock:  # the replay sends them now
                        for sub in members:
                            self._retry_due.pop(sub, None)
                self._registry.set_state(members, SubscriptionState.PENDING)
                log.info("connection %d: sending %d subscriptions", conn.index, len(members))
                self._send_subscribe(conn, members)

    def on_close(
        self, conn: Connection, code: int | None, reason: str, will_reconnect: bool
    ) -> None:
        with self._send_lock:
            self._replayed.discard(conn.index)
        self._requests.fail_all(
            ConnectionFailedError(_protocol.describe_close(code, reason), close_code=code),
            via=conn.index,
        )
        members = self.pool.members(conn.index)
        # Pushes may be missing from the server time of the last one this connection
        # delivered: anything stamped later was still in flight when it broke.
        start = (
            self._last_push_ts.get(conn.index) or self._last_frame_ms.get(conn.index) or now_ms()
        )
        for sub in members:
            if self._registry.state(sub) is SubscriptionState.ACTIVE:
                self._outage.setdefault(sub, start)
        changed = self._registry.set_state(members, SubscriptionState.PENDING)
        self.notify_states(changed, SubscriptionState.PENDING)
        self._dispatcher.notify(
            "cmcsync_on_disconnect",
            client=self._client,
            code=code,
            reason=reason,
            will_reconnect=will_reconnect,
        )
        if code in _protocol.LONG_BACKOFF_CLOSE_CODES and will_reconnect and members:
            self._move_away(conn, members)

    def on_attempt_failed(self, conn: Connection, reason: str, will_retry: bool) -> None:
        error = ConnectionFailedError(
            f"connection {conn.index}: {reason}" + ("; retrying" if will_retry else "")
        )
        self._dispatcher.notify("cmcsync_on_error", client=self._client, error=error)

    def on_fatal(self, conn: Connection, error: CmcsyncError) -> None:
        self._requests.fail_all(error)
        self._fatal_callback(error)

    def on_frames(self, conn: Connection, frames: Sequence[Frame]) -> None:
        self._process(frames, conn)

    # --- adaptation -----------------------------------------------------------------------

    def _move_away(self, conn: Connection, subs: Sequence[Subscription]) -> None:
        """After a 4004: move ``subs`` to open connections with room; the rest wait on ``conn``.

        The key has no connection to spare, so the pool opens no more than it has; ``conn``
        keeps retrying with the long backoff and replays what stayed on it.
        """
        self.pool.stop_growing()
        open_now = {c.index for c in self.pool.connections if c.open and c is not conn}
        self.pool.shrink_cap(conn.index, 0)
        self.pool.release(subs)
        with self._send_lock:
            placed, _, homeless = self.pool.place(subs, avoid=conn.index, only=open_now)
            for index, members in placed.items():
                self.moved += len(members)
                log.info(
                    "moved %d subscriptions from connection %d to %d",
                    len(members),
                    conn.index,
                    index,
                )
                if index in self._replayed:
                    self._send_subscribe(self.pool.connections[index], members)
        if homeless:
            self.pool.restore_cap(conn.index)
            self.pool.place(homeless, only={conn.index})

    # --- frames ---------------------------------------------------------------------------

    def _process(self, frames: Sequence[Frame], conn: Connection | None) -> None:
        received_ms = self._last_frame_ms[conn.index if conn is not None else -1] = now_ms()
        self._batch_time = time.monotonic()
        tap = self.tap
        if tap is not None:
            self._tap_frames(tap, frames, received_ms / 1000.0)
        events: list[Event] = []
        parse = self._parse
        on_data = self._on_data
        submit = self._dispatcher.submit
        # The first event of a batch is handed over as soon as it is decoded, the rest when
        # the batch ends: at a calm rate a batch holds one or two frames, and the first need
        # not wait for the second to be decoded; under load, batches stay batches.
        first = len(frames) > 1
        last: Event | None = None
        for opcode, payload in frames:
            try:
                if opcode != OPCODE_TEXT:
                    if opcode == OPCODE_TOO_LARGE:
                        raise ProtocolError(payload.decode(), kind="too_large")
                    raise ProtocolError(
                        f"binary frame of {len(payload)} bytes; CMC sends JSON text",
                        kind="binary",
                    )
                # Bytes straight to the JSON decoder: it checks the UTF-8 as it reads.
                message = parse(payload)
                kind = message["type"]
                if kind == "data":
                    event = on_data(message)
                    if event is not None:
                        last = event
                        if first:
                            first = False
                            submit((event,))
                        else:
                            events.append(event)
                elif kind == "ack":
                    self._on_ack(message)
                elif kind == "error":
                    self._on_error(message)
                elif kind == "pong":
                    self.pongs += 1
                    if conn is not None:
                        conn.answer_ping(_protocol.request_id(message), self._batch_time)
                elif kind == "welcome":
                    if conn is not None:
                        self._on_welcome(conn, message)
                else:
                    raise ProtocolError(f"unknown message type {kind!r}", kind="unknown_type")
            except ProtocolError as exc:
                self._malformed_frame(exc)
        if last is not None:
            if conn is not None:
                self._last_push_ts[conn.index] = last.ts
            if events:
                submit(events)

    def _tap_frames(
        self,
        tap: Callable[[float, str | bytes], None],
        frames: Sequence[Frame],
        received_at: float,
    ) -> None:
        for opcode, payload in frames:
            frame = payload.decode("utf-8", "replace") if opcode == OPCODE_TEXT else payload
            try:
                tap(received_at, frame)
            except Exception:
                # A broken tap must not cost the frame.
                log.exception("frame tap failed")

    def _on_data(self, message: Mapping[str, Any]) -> Event | None:
        name = message.get("channel")
        row = CHANNELS.get(name) if name.__class__ is str else None
        if row is None:
            if not isinstance(name, str):
                raise ProtocolError("data push without a channel", kind="missing_field")
            raise ProtocolError(f"data push for unknown channel {name!r}", kind="unknown_channel")
        params = message.get("params")
        ts = message.get("ts")
        if params.__class__ is not dict:
            raise ProtocolError(f"{name} push without params", kind="missing_field")
        # JSON gives exact ints; a bool is not a timestamp.
        if ts.__class__ is not int:
            raise ProtocolError(f"{name} push without an integer ts", kind="missing_field")
        if "data" not in message:
            raise ProtocolError(f"{name} push without data", kind="missing_field")
        event = self._codec.decode(row, params, message["data"], ts)
        if row.dedupe_key is not None and self._deduper.is_duplicate(row, event):
            return None
        seen = self._identify(row, params)
        if seen is None:
            # Not one of ours (params echoed in an unexpected form): delivered all the same,
            # since dropping data silently is worse.
            self.unmatched += 1
        else:
            if seen.batch != self._batch_time:
                # Once per subscription and batch: every push of a batch has the same time.
                seen.batch = self._batch_time
                sub = seen.sub
                self._last_seen[sub] = self._batch_time
                if self._stale:
                    self._stale.pop(sub, None)
                version = self._registry.wanted_version
                if seen.version != version:
                    seen.version = version
                    seen.wanted = self._registry.state(sub) is not None
            if not seen.wanted:
                # A push that crossed an unsubscribe: delivered too, and counted.
                self.unmatched += 1
        self.events_by_channel[row.name] += 1
        return event

    def _identify(self, row: Channel, params: Mapping[str, Any]) -> _Seen | None:
        """The subscription a push belongs to; cached, since every push repeats its params."""
        try:
            key = (row.name, tuple(params.items()))
            return self._identities[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value in the echo: not a params echo we know
            if deeper_than(params, MAX_EXTRA_DEPTH):
                raise ProtocolError(
                    f"{row.name} push with params nested deeper than {MAX_EXTRA_DEPTH} levels",
                    kind="too_deep",
                ) from None
            return None
        scalar = row.scalar_form(params)
        seen = _Seen(Subscription.of(row.name, scalar)) if scalar is not None else None
        if len(self._identities) >= 100_000:
            self._identities.clear()
        self._identities[key] = seen
        return seen

    def _on_ack(self, message: Mapping[str, Any]) -> None:
        self.acks += 1
        limit = message.get("sub_limit")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self.pool.learn_sub_limit(limit)
        code = message.get("code", 0)
        rid = _protocol.request_id(message)
        if code not in (0, None, "0"):
            # CMC reports failures as error envelopes, but an ack with a non-zero code is a
            # refusal all the same.
            status = {"error_code": code, "error_message": message.get("msg")}
            self._on_error({"id": rid, "status": status})
            return
        request = self._requests.resolve(rid, answer=message) if rid is not None else None
        if request is None or request.method != "subscribe":
            return
        changed = self._registry.set_state(request.subs, SubscriptionState.ACTIVE)
        self.notify_states(changed, SubscriptionState.ACTIVE)
        if self._retry_failures:
            with self._retry_lock:
                for sub in request.subs:
                    self._retry_failures.pop(sub, None)
        acked_at = time.monotonic()
        for sub in changed:
            # Silence is measured from the ack when nothing has come yet.
            self._last_seen[sub] = max(self._last_seen.get(sub, 0.0), acked_at)
        end = now_ms()
        for sub in changed:
            start = self._outage.pop(sub, None)
            if start is not None:
                self.gaps += 1
                self._dispatcher.notify(
                    "cmcsync_on_gap",
                    client=self._client,
                    channel=sub.channel,
                    params=sub.params_dict,
                    start_ms=start,
                    end_ms=end,
                )

    def _on_error(self, message: Mapping[str, Any]) -> None:
        self.server_errors += 1
        base = _protocol.server_error(message)
        rid = _protocol.request_id(message)
        request = self._requests.get(rid) if rid is not None else None
        if request is None:
            log.warning("server error not tied to a request: %s", base)
            self._dispatcher.notify("cmcsync_on_error", client=self._client, error=base)
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
        if request.method != "subscribe":
            return
        subs = list(request.subs)
        if base.code == _SUBSCRIPTION_LIMIT and request.via is not None:
            subs = self._rehome_after_limit(request.via, subs, base.detail)
            if not subs:
                return
        log.warning("subscription refused: %s", error)
        changed = self._registry.set_state(subs, SubscriptionState.REJECTED, error)
        self.notify_states(changed, SubscriptionState.REJECTED, error)
        if base.code in _protocol.TRANSIENT_ERROR_CODES:
            self._retry_later(changed)

    # --- retries after a transient refusal (watchdog thread) -------------------------------

    def _retry_later(self, subs: Sequence[Subscription]) -> None:
        """Send ``subs`` again after a backoff, while they stay wanted and refused.

        A subscription awaited by :meth:`cmcsync.Client.subscribe` is discarded by it when
        refused, so this retries what nobody is waiting for: replays, and subscriptions sent
        without waiting. The backoff grows with each refusal in a row; after
        ``Backoff.max_attempts`` of them, only the next reconnect sends them again.
        """
        if not subs:
            return
        limit = self._backoff.max_attempts
        with self._retry_lock:
            failures = 1 + max(self._retry_failures.get(sub, 0) for sub in subs)
            if limit is not None and failures >= limit:
                log.warning(
                    "%d subscriptions refused %d times in a row; sent again at the next "
                    "reconnect only",
                    len(subs),
                    failures,
                )
                return
            # Never sooner than half the first window: a subscribe() call waiting on this
            # refusal discards its subscriptions first, and they are not sent again.
            backoff = self._backoff
            floor = min(backoff.base, backoff.cap) / 2
            due = time.monotonic() + max(backoff.compute(failures), floor)
            for sub in subs:
                self._retry_failures[sub] = failures
                self._retry_due[sub] = due
        log.info(
            "%d refused subscriptions will be sent again in %.2f s",
            len(subs),
            due - time.monotonic(),
        )
        self._watch_wake.set()

    def _next_retry(self) -> float:
        with self._retry_lock:
            return min(self._retry_due.values(), default=math.inf)

    def retry_due(self, now: float) -> None:
        """Send again the refused subscriptions whose backoff is over."""
        with self._retry_lock:
            due = [sub for sub, when in self._retry_due.items() if when <= now]
            for sub in due:
                del self._retry_due[sub]
        by_conn: dict[int, list[Subscription]] = {}
        for sub in due:
            index = self.pool.home(sub)
            if index is not None and self._registry.state(sub) is SubscriptionState.REJECTED:
                by_conn.setdefault(index, []).append(sub)
        with self._send_lock:
            for index, members in by_conn.items():
                if index not in self._replayed:
                    continue  # not open yet: its replay sends them
                log.info(
                    "connection %d: sending %d refused subscriptions again", index, len(members)
                )
                self._registry.set_state(members, SubscriptionState.PENDING)
                self._send_subscribe(self.pool.connections[index], members)

    def _rehome_after_limit(
        self, index: int, subs: list[Subscription], detail: str | None
    ) -> list[Subscription]:
        """The connection is full (2303): learn its limit and place ``subs`` again.

        The limit comes from the error's detail when it states one; otherwise, if the
        connection already carries active subscriptions, it is full at that count; otherwise
        (a first request larger than the limit) the guess is halved until a request fits or
        an ack states ``sub_limit``.

        :returns: the subscriptions no connection had room for.
        """
        active = [
            s
            for s in self.pool.members(index)
            if self._registry.state(s) is SubscriptionState.ACTIVE
        ]
        stated = _stated_limit(detail)
        avoid: int | None = None
        if stated is not None:
            self.pool.learn_sub_limit(stated)
        elif active:
            self.pool.shrink_cap(index, len(active))
            avoid = index
        else:
            self.pool.learn_sub_limit(max(1, min(self.pool.sub_limit, len(subs)) // 2))
        self.pool.release(subs)
        placed, homeless = self._place_and_send(subs, avoid=avoid)
        for target_index, members in placed.items():
            if target_index != index:
                self.moved += len(members)
            log.info(
                "connection %d is full (2303); %d subscriptions placed on connection %d",
                index,
                len(members),
                target_index,
            )
        return homeless

    def _on_welcome(self, conn: Connection, message: Mapping[str, Any]) -> None:
        interval = message.get("ping_interval_ms")
        low, high = _PING_RANGE_MS
        if (
            isinstance(interval, (int, float))
            and not isinstance(interval, bool)
            and low <= interval <= high
        ):
            conn.set_ping_interval(float(interval) / 1000.0)
            return
        if interval is not None:
            log.warning("ignoring welcome ping_interval_ms=%r", interval)

    def _malformed_frame(self, error: ProtocolError) -> None:
        first = error.kind not in self.malformed
        self.malformed[error.kind] = self.malformed.get(error.kind, 0) + 1
        # Once per kind at WARNING, so a stream of garbage cannot flood the log.
        log.log(logging.WARNING if first else logging.DEBUG, "skipped a frame: %s", error)
        self._dispatcher.notify("cmcsync_on_error", client=self._client, error=error)

    def notify_states(
        self,
        subs: Iterable[Subscription],
        state: SubscriptionState,
        error: BaseException | None = None,
    ) -> None:
        """Queue one ``cmcsync_on_subscription_state`` call per subscription."""
        for sub in subs:
            self._dispatcher.notify(
                "cmcsync_on_subscription_state",
                client=self._client,
                channel=sub.channel,
                params=sub.params_dict,
                state=state.value,
                error=error,
            )

    # --- liveness (watchdog thread) --------------------------------------------------------

    def _watch(self) -> None:
        """The watchdog thread: liveness checks, and retries of refused subscriptions."""
        interval = self._liveness.check_interval if self._liveness.enabled else math.inf
        next_check = time.monotonic() + interval
        while True:
            wake_at = min(next_check, self._next_retry())
            timeout = None if wake_at == math.inf else max(0.0, wake_at - time.monotonic())
            self._watch_wake.wait(timeout)
            self._watch_wake.clear()
            if self._watch_stop.is_set():
                return
            now = time.monotonic()
            try:
                if now >= next_check:
                    next_check = now + interval
                    self.check_liveness(now)
                self.retry_due(now)
            except Exception:
                log.exception("watchdog check failed")

    def _cadence(self, sub: Subscription) -> float | None:
        override = self._liveness.cadences.get(sub.channel)
        return override if override is not None else CHANNELS[sub.channel].cadence

    def check_liveness(self, now: float) -> None:
        """Find active subscriptions silent for too long and recover them one step further."""
        recycle: dict[int, str] = {}
        for sub, state in self._registry.snapshot().items():
            cadence = self._cadence(sub)
            if state is not SubscriptionState.ACTIVE or cadence is None:
                continue
            seen = self._last_seen.setdefault(sub, now)
            silent = now - seen
            index = self.pool.home(sub)
            if silent < self._liveness.factor * cadence or index is None:
                continue
            conn = self.pool.connections[index]
            if not conn.open:
                continue
            self._last_seen[sub] = now
            if self._stale.get(sub, 0) == 0:
                self._stale[sub] = 1
                self.stale_resubscribes += 1
                self._notify_stale(sub, silent, "resubscribe")
                payload = dict(sub.params)
                row = CHANNELS[sub.channel]
                payload[row.list_param] = [payload[row.list_param]]
                self._send(conn, "unsubscribe", sub.channel, payload)
                self._send_subscribe(conn, [sub])
            else:
                self._stale[sub] = 0
                self._notify_stale(sub, silent, "reconnect")
                recycle[index] = f"{sub} silent for {silent:.1f} s after a resubscribe"
        for index, reason in recycle.items():
            self.stale_reconnects += 1
            self.pool.connections[index].recycle(reason)

    def _notify_stale(self, sub: Subscription, silent: float, action: str) -> None:
        log.warning("%s delivered nothing for %.1f s: %s", sub, silent, action)
        self._dispatcher.notify(
            "cmcsync_on_stale",
            client=self._client,
            channel=sub.channel,
            params=sub.params_dict,
            silent_for=silent,
            action=action,
        )

    # --- stats ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of the connections and the envelope handling."""
        conns = self.pool.connections
        loads = self.pool.loads()
        per_connection = [
            {
                "index": c.index,
                "state": c.state.value,
                "subscriptions": loads[c.index] if c.index < len(loads) else 0,
                "connects": c.connects,
                "failed_attempts": c.failed_attempts,
                "last_close_code": c.last_close_code,
                "last_close_reason": c.last_close_reason,
                "frames_received": c.frames_received,
                "bytes_received": c.bytes_received,
                "frames_sent": c.frames_sent,
                "pings_sent": c.pings_sent,
                "lent": c.lent,
                "lends": c.lends,
                "takebacks": c.takebacks,
            }
            for c in conns
        ]
        last = max(conns, key=lambda c: c.connects, default=None)
        total = sum(loads)
        return {
            "connection": conns[0].state.value if conns else "idle",
            "connections": per_connection,
            "open_connections": sum(1 for c in conns if c.open),
            "connects": sum(c.connects for c in conns),
            "reconnects": self.reconnects,
            "failed_attempts": sum(c.failed_attempts for c in conns),
            "last_close_code": last.last_close_code if last else None,
            "last_close_reason": last.last_close_reason if last else "",
            "frames_received": sum(c.frames_received for c in conns),
            "bytes_received": sum(c.bytes_received for c in conns),
            "frames_sent": sum(c.frames_sent for c in conns),
            "pings_sent": sum(c.pings_sent for c in conns),
            "takebacks": sum(c.takebacks for c in conns),
            "pongs": self.pongs,
            "acks": self.acks,
            "server_errors": self.server_errors,
            "events": sum(self.events_by_channel.values()),
            "events_by_channel": dict(self.events_by_channel),
            "malformed": sum(self.malformed.values()),
            "malformed_by_kind": dict(self.malformed),
            "duplicates_dropped": self._deduper.dropped,
            "unmatched_events": self.unmatched,
            "gaps": self.gaps,
            "moved_subscriptions": self.moved,
            "stale_resubscribes": self.stale_resubscribes,
            "stale_reconnects": self.stale_reconnects,
            "sub_limit": self.pool.sub_limit,
            "max_connections": self.pool.max_connections,
            "budget": self.pool.budget,
            "placed_subscriptions": total,
            # CMC charges 0.1 credit per subscription (its docs do not say per what period).
            "estimated_credits": round(total * 0.1, 1),
        }


class _Seen:
    """A subscription pushes are attributed to, and what the last batch learnt about it."""

    __slots__ = ("batch", "sub", "version", "wanted")

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        #: The batch time of the last batch that refreshed this record.
        self.batch = -1.0
        #: Whether the subscription was wanted, as of the registry's ``wanted_version``
        #: ``version`` (-1: not asked yet).
        self.wanted = False
        self.version = -1


def _stated_limit(detail: str | None) -> int | None:
    """The per-connection limit an error detail states, e.g. "... the limit is 100 ..."."""
    if not detail:
        return None
    found = _LIMIT_IN_DETAIL.search(detail)
    return int(found.group(1)) if found else None


def batches(
    subs: Iterable[Subscription], limit: int
) -> list[tuple[str, dict[str, Any], list[Subscription]]]:
    """Group subscriptions into few requests: one per channel and scalar params, with the list
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
