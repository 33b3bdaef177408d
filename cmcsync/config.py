"""Settings: frozen attrs value objects with keyword-only arguments and validators.

Every knob of the client lives here, grouped by what it governs: :class:`Backoff` (how long
to wait before reconnecting), :class:`Timeouts` (how long to wait for the server) and
:class:`DispatchConfig` (the queue between the socket and user code). Build one, pass it to
:class:`cmcsync.Client`; they are immutable, so one instance can be shared.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

__all__ = ["Backoff", "DispatchConfig", "DispatchMode", "Liveness", "OverflowPolicy", "Timeouts"]

#: What the dispatcher does when its queue is full:
#:
#: - ``"block"``: the reader waits for room (lossless; the default). The socket stops being
#:   read while it waits, but keep-alive pings are still sent.
#: - ``"drop_oldest"``: the oldest queued event is dropped and counted.
#: - ``"conflate"``: for clock-driven price channels, only the latest event per subscription
#:   is kept; events of other channels still block.
OverflowPolicy = Literal["block", "drop_oldest", "conflate"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with full jitter and a cap.

    After the n-th failure in a row the client waits a random time in
    ``[0, min(cap, base * 2**(n-1))]`` (full jitter). Close 4004 (too many connections) and
    HTTP 429 use :attr:`long_base` instead of :attr:`base` and wait between half the window
    and the whole of it, so a client that hit a limit never retries early.
    The failure count resets once a connection has stayed up for :attr:`reset_after` seconds.

    :param base: seconds of the first window.
    :param cap: the longest wait, in seconds.
    :param long_base: first window after 4004 / HTTP 429.
    :param reset_after: seconds a connection must last to count as stable.
    :param max_attempts: give up (:class:`cmcsync.GaveUpError`) after this many consecutive
        failures; ``None`` retries for ever.
    """

    base: float = attrs.field(default=0.5, validator=_positive)
    cap: float = attrs.field(default=30.0, validator=_positive)
    long_base: float = attrs.field(default=15.0, validator=_positive)
    reset_after: float = attrs.field(default=60.0, validator=_positive)
    max_attempts: int | None = attrs.field(default=None, validator=_optional_count)

    def compute(
        self, failures: int, *, long: bool = False, rng: random.Random | None = None
    ) -> float:
        """Return the seconds to wait before the next attempt.

        :param failures: consecutive failures so far (1 for the first).
        :param long: use :attr:`long_base` (after 4004 or HTTP 429).
        :param rng: random source, for reproducible tests.
        """
        rand = rng or random
        base = self.long_base if long else self.base
        window = min(max(self.cap, base), base * 2.0 ** min(max(failures - 1, 0), 32))
        if long:
            # Never retry early after a rate limit: wait at least half the window.
            return window / 2 + float(rand.uniform(0, window / 2))
        return float(rand.uniform(0, window))


@attrs.frozen(kw_only=True)
class Timeouts:
    """How long cmcsync waits for the server.

    :param connect: the TCP + TLS + WebSocket handshake, in seconds.
    :param ack: :meth:`cmcsync.Client.subscribe` waiting for the server's ack.
    :param ping_interval: seconds between JSON pings when the server's welcome gives no
        ``ping_interval_ms``; a welcome overrides it.
    :param pong: after a ping, how long the connection may stay completely silent (no pong,
        no frame of any kind) before it is declared dead and replaced, even if TCP looks open.
    :param close: how long :meth:`cmcsync.Client.close` waits for each thread.
    """

    connect: float = attrs.field(default=10.0, validator=_positive)
    ack: float = attrs.field(default=10.0, validator=_positive)
    ping_interval: float = attrs.field(default=10.0, validator=_positive)
    pong: float = attrs.field(default=10.0, validator=_positive)
    close: float = attrs.field(default=5.0, validator=_positive)


#: Where plugins are called:
#:
#: - ``"thread"``: on the dispatcher thread ``cmcsync-dispatch`` (the default). While it is
#:   idle that thread reads the sockets itself and calls the hooks straight from the read;
#:   once a hook has kept it busy for more than 20 ms, the reader thread reads instead (it
#:   looks every 0.1 s) and queues the events. A slow plugin only makes the queue grow;
#:   the socket is read on.
#: - ``"inline"``: on the reader thread itself, right after each batch of frames is decoded,
#:   with the same per-plugin isolation. Faster (no hand-over between threads), but **a slow
#:   plugin delays the socket**: no frame is read while a hook runs, so the server's buffer
#:   fills and data arrives late. Keep-alive pings still go out (they have their own
#:   thread). Lifecycle hooks and events submitted from other threads still go through the
#:   dispatcher thread; hooks are never called on two threads at once.
DispatchMode = Literal["thread", "inline"]


@attrs.frozen(kw_only=True)
class DispatchConfig:
    """The queue between the reader thread and user code.

    :param queue_size: events the queue holds before the overflow policy applies.
    :param overflow: see :data:`OverflowPolicy`.
    :param slow_fraction: a slow consumer is reported (hook and stats) when the queue is this
        full, before it overflows.
    :param max_plugin_failures: a plugin whose hook raises this many times in a row is
        switched off and reported; ``None`` never switches a plugin off.
    :param batch_size: the most events handed to the dispatcher in one queue operation.
    :param mode: ``"thread"`` (the default) or ``"inline"``, see :data:`DispatchMode`. In
        inline mode a slow plugin delays the reading of the socket.
    """

    queue_size: int = attrs.field(default=10_000, validator=[v.instance_of(int), v.ge(1)])
    overflow: OverflowPolicy = attrs.field(
        default="block", validator=v.in_(("block", "drop_oldest", "conflate"))
    )
    slow_fraction: float = attrs.field(default=0.8, validator=[v.gt(0.0), v.le(1.0)])
    max_plugin_failures: int | None = attrs.field(default=10, validator=_optional_count)
    batch_size: int = attrs.field(default=256, validator=[v.instance_of(int), v.ge(1)])
    mode: DispatchMode = attrs.field(default="thread", validator=v.in_(("thread", "inline")))


def _cadences(value: Mapping[str, float]) -> Mapping[str, float]:
    for channel, seconds in value.items():
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise ValueError(f"cadence for {channel!r} must be a positive number of seconds")
    return dict(value)


@attrs.frozen(kw_only=True)
class Liveness:
    """Watching each subscription for silence while its connection looks healthy.

    A subscription with an expected cadence that delivers nothing for ``factor`` times that
    cadence is subscribed again; if it stays silent for as long again, its connection is
    replaced. Each step is reported by ``cmcsync_on_stale``.

    By default only the clock-driven channel is watched: latest prices, expected every 15 s
    at most (5 s for the top 500). On-chain channels push when the market moves (even klines
    and unique traders only close an interval that saw trades), so they are not watched
    unless ``cadences`` gives them one.

    :param enabled: turn the watchdog off entirely.
    :param factor: how many expected cadences of silence make a subscription stale.
    :param cadences: channel wire name -> expected seconds between pushes, overriding the
        table (e.g. ``{"onchain@transaction": 120}`` for a busy token).
    :param check_interval: seconds between two checks of the watchdog thread.
    """

    enabled: bool = True
    factor: float = attrs.field(default=3.0, validator=_positive)
    cadences: Mapping[str, float] = attrs.field(factory=dict, converter=_cadences)
    check_interval: float = attrs.field(default=1.0, validator=_positive)
