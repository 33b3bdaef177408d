"""The clients under test, each run in a process of its own: ``python peers.py PEER URL ...``.

Every peer connects to the blast server with the key header, sends the scenario's subscribe
requests (:data:`blast.PLAN`), and hands each data message to a :class:`Meter` the way its
users would see it: cmcsync through a plugin hook (a typed event), the others right after
``json.loads``. It prints one JSON object with what the meter measured and exits.

Peers (``PEERS``):

- ``cmcsync``: cmcsync's default mode: dispatcher thread, typed events, one plugin.
- ``cmcsync-inline``: the same with ``DispatchConfig(mode="inline")``: hooks on the reader.
- ``cmcsync-decimal``: the default mode with ``decimal=True`` (exact prices, stdlib json).
- ``wsapp``: websocket-client's ``WebSocketApp`` with ``on_message`` doing ``json.loads``.
- ``recv``: a bare websocket-client loop, ``json.loads(ws.recv())``.
- ``quickstart``: CMC's Python quick start: asyncio ``websockets``, ``json.loads`` per message.

Both websocket-client peers are given ``skip_utf8_validation=True``, their fastest setting
(with the default, websocket-client checks UTF-8 in pure Python and is several times slower):
the comparison is with websocket-client at its best, not with its defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from blast import plan

KEY = "bench-key"
KEY_HEADER = "X-CMC_PRO_API_KEY"


def rss_mb() -> float:
    """The resident set size of this process now, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    """CPU seconds (user + system) used by every thread of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Counts data messages; times the ones after the warm-up; samples latency and RSS.

    :param count: data messages to wait for.
    :param warmup: messages not measured (connection settling, caches filling).
    :param latency: record ``now - ts`` (µs) per measured message.
    :param rss_every: sample the RSS every this many messages (0: never).
    """

    def __init__(self, count: int, warmup: int, latency: bool, rss_every: int = 0) -> None:
        self.count = count
        self.warmup = warmup
        self.n = 0
        self.latencies: array[int] | None = array("q") if latency else None
        self.rss_every = rss_every
        self.rss_samples: list[tuple[int, float]] = []
        self.done = threading.Event()
        self.t0 = self.t1 = 0.0
        self.c0 = self.c1 = 0.0
        self.rss_warm = 0.0

    def hit(self, ts: int) -> None:
        """One data message whose envelope ``ts`` is its send time in epoch µs."""
        n = self.n = self.n + 1
        if n <= self.warmup:
            if n == self.warmup:
                self.rss_warm = rss_mb()
                self.t0, self.c0 = time.perf_counter(), cpu_seconds()
            return
        if self.latencies is not None:
            self.latencies.append(time.time_ns() // 1000 - ts)
        if self.rss_every and n % self.rss_every == 0:
            self.rss_samples.append((n, round(rss_mb(), 2)))
        if n == self.count:
            self.t1, self.c1 = time.perf_counter(), cpu_seconds()
            self.done.set()

    def result(self) -> dict[str, Any]:
        measured = self.count - self.warmup
        seconds = self.t1 - self.t0
        out: dict[str, Any] = {
            "messages": measured,
            "seconds": seconds,
            "msgs_per_s": measured / seconds if seconds > 0 else 0.0,
            "cpu_per_100k": (self.c1 - self.c0) / measured * 100_000 if measured else 0.0,
            "cpu_share": (self.c1 - self.c0) / seconds if seconds > 0 else 0.0,
            "rss_warm_mb": self.rss_warm,
            "rss_end_mb": rss_mb(),
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if self.rss_samples:
            out["rss_samples"] = self.rss_samples
        if self.latencies:
            ordered = sorted(self.latencies)
            for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
                out[f"lat_{name}_us"] = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
            out["lat_max_us"] = ordered[-1]
        return out


def _requests() -> list[str]:
    return [
        json.dumps({"id": i, "method": "subscribe", "channel": channel, "params": params})
        for i, (channel, params) in enumerate(plan(), start=1)
    ]


# --- cmcsync ----------------------------------------------------------------------------------


def run_cmcsync(
    url: str, meter: Meter, timeout: float, mode: str | None, decimal: bool = False
) -> dict[str, Any]:
    import cmcsync

    class Bench:
        """The one plugin: declares the subscriptions, gets every event."""

        @cmcsync.hookimpl
        def cmcsync_subscriptions(self) -> list[tuple[str, dict[str, Any]]]:
            return plan()

        @cmcsync.hookimpl
        def cmcsync_on_event(self, event: Any, client: Any) -> None:
            meter.hit(event.ts)

    dispatch = cmcsync.DispatchConfig(mode=mode) if mode else None  # type: ignore[call-arg]
    client = cmcsync.Client(
        api_key=KEY, url=url, autoload=False, plugins=[Bench()], dispatch=dispatch, decimal=decimal
    )
    with client:
        meter.done.wait(timeout)
        stats = client.stats()
    return {
        "malformed": stats["malformed"],
        "unmatched": stats["unmatched_events"],
        "duplicates": stats["duplicates_dropped"],
        "plugin_errors": stats["dispatch"]["plugin_errors"],
    }


def run_cmcsync_subs(url: str, count: int) -> dict[str, Any]:
    """RSS with one subscription, then with ``count`` (spread over connections as needed)."""
    import cmcsync

    with cmcsync.Client(api_key=KEY, url=url, autoload=False) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1])
        gc.collect()
        time.sleep(0.5)
        before = rss_mb()
        client.subscribe("market@crypto_latest_price", crypto_ids=list(range(2, count + 1)))
        gc.collect()
        time.sleep(0.5)
        after = rss_mb()
        connections = client.stats()["open_connections"]
    return {
        "subscriptions": count,
        "connections": connections,
        "rss_one_mb": before,
        "rss_all_mb": after,
        "cost_mb": after - before,
    }


# --- websocket-client ---------------------------------------------------------------------------


def run_wsapp(url: str, meter: Meter, timeout: float) -> dict[str, Any]:
    import websocket

    loads = json.loads

    def on_open(ws: websocket.WebSocketApp) -> None:
        for text in _requests():
            ws.send(text)

    def on_message(ws: websocket.WebSocketApp, message: str | bytes) -> None:
        msg = loads(message)
        if msg.get("type") == "data":
            meter.hit(msg["ts"])
            if meter.done.is_set():
                ws.close()

    app = websocket.WebSocketApp(
        url, header=[f"{KEY_HEADER}: {KEY}"], on_open=on_open, on_message=on_message
    )
    timer = threading.Timer(timeout, app.close)
    timer.start()
    app.run_forever(skip_utf8_validation=True)
    timer.cancel()
    return {}


def run_recv(url: str, meter: Meter, timeout: float) -> dict[str, Any]:
    import websocket

    # No socket timeout: with one, every read polls first (a second syscall per read).
    ws = websocket.create_connection(
        url, header=[f"{KEY_HEADER}: {KEY}"], skip_utf8_validation=True
    )
    watchdog = threading.Timer(timeout, ws.abort)
    watchdog.start()
    for text in _requests():
        ws.send(text)
    loads = json.loads
    done = meter.done
    try:
        while not done.is_set():
            msg = loads(ws.recv())
            if msg.get("type") == "data":
                meter.hit(msg["ts"])
    finally:
        watchdog.cancel()
        ws.close()
    return {}


# --- CMC's quick start: asyncio websockets ------------------------------------------------------


def run_quickstart(url: str, meter: Meter, timeout: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async def main() -> None:
        async with connect(url, additional_headers={KEY_HEADER: KEY}) as ws:
            for text in _requests():
                await ws.send(text)
            async for message in ws:
                data = json.loads(message)
                if data.get("type") == "data":
                    meter.hit(data["ts"])
                    if meter.done.is_set():
                        break

    asyncio.run(asyncio.wait_for(main(), timeout))
    return {}


PEERS: dict[str, Callable[[str, Meter, float], dict[str, Any]]] = {
    "cmcsync": lambda url, meter, timeout: run_cmcsync(url, meter, timeout, None),
    "cmcsync-inline": lambda url, meter, timeout: run_cmcsync(url, meter, timeout, "inline"),
    "cmcsync-decimal": lambda url, meter, timeout: run_cmcsync(url, meter, timeout, None, True),
    "wsapp": run_wsapp,
    "recv": run_recv,
    "quickstart": run_quickstart,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one peer against the blast server.")
    parser.add_argument("peer", choices=[*PEERS, "cmcsync-subs"])
    parser.add_argument("url", help="ws://127.0.0.1:PORT/v1 of the blast server")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=0.0, help="0: as fast as possible")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--rss-every", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.peer == "cmcsync-subs":
        print(json.dumps(run_cmcsync_subs(args.url, args.count)), flush=True)  # noqa: T201
        return 0
    warmup = args.warmup or max(1, args.count // 20)
    query = f"count={args.count}&rate={args.rate:g}&hold={args.timeout + 10:g}"
    url = f"{args.url}?{query}"
    meter = Meter(args.count, warmup, latency=args.rate > 0, rss_every=args.rss_every)
    began = time.monotonic()
    extra = PEERS[args.peer](url, meter, args.timeout)
    if not meter.done.is_set():
        print(  # noqa: T201 - the harness reads this line
            json.dumps(
                {"error": f"received {meter.n} of {args.count} in {time.monotonic() - began:.1f} s"}
            ),
            flush=True,
        )
        return 1
    print(json.dumps({**meter.result(), **extra}), flush=True)  # noqa: T201 - read by run.py
    return 0


if __name__ == "__main__":
    sys.exit(main())
