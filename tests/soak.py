"""Soak run: hours of a bad network compressed into minutes. One command, not a pytest test::

    python tests/soak.py --minutes 5

The simulator runs at a high rate in this process and injects a fault every few seconds,
in rotation: every reconnecting close code of CMC's table, 4004, a TCP reset, a silent
server (half-open), and a stalled subscription. The client runs in a child process of its
own, so its memory and threads are measured alone; it reports what it delivered, the gaps
it announced, its reconnects, RSS and threads every window.

At the end (and every window, for frames old enough to have settled) every data frame the
server wrote is matched against what the client delivered. A frame not delivered is
*in a gap* if its ``ts`` falls inside a ``cmcsync_on_gap`` interval of its subscription,
else *lost*. Only settled windows are kept, so memory stays bounded however long the run.

Exit status: 0 when nothing was lost outside the reported gaps, no thread outlived the
client, and RSS grew by less than ``--rss-budget`` MB after the warm-up; 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import queue
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str, int]  # channel, params as sorted JSON, ts
Sub = tuple[str, str]

PRICE = "market@crypto_latest_price"
# Ids below 5000 push every ~5 s of market time; at --speed 200, every 25 ms.
PRICE_IDS = list(range(1, 41))
OTHERS: list[tuple[str, dict[str, Any]]] = [
    ("onchain@kline", {"platform_id": 14, "address": ["0xa1", "0xa2"], "interval": "1s"}),
    ("onchain@unique_trader", {"platform_id": 14, "address": ["0xa1"], "interval": "1s"}),
    ("onchain@token_metric", {"platform_id": 14, "address": ["0xa1", "0xa2"]}),
    ("onchain@holders_metrics", {"platform_id": 14, "address": ["0xa3"]}),
    ("onchain@holder_wallet_update", {"platform_id": 14, "wallet_address": ["0xb1"]}),
]
FAULTS = [
    "close 1000",
    "drop",
    "close 1001",
    "silence",
    "close 1011",
    "stall",
    "close 1012",
    "close 4004",
    "close 1013",
    "drop",
    "close 1014",
    "silence",
]


def say(text: str = "") -> None:
    """Write one line of the report at once (the run is long: show it as it goes)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# --- the client, in its own process ---------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def client_main(
    url: str, key: str, window: float, warmup: float, trace: bool, out: Any, stop: Any
) -> None:
    """Run a client until ``stop`` is set, reporting every ``window`` seconds on ``out``.

    With ``trace``, memory allocations are traced from the end of the warm-up and the
    largest growths are reported at the end.
    """
    import logging

    import cmcsync
    from cmcsync.hookspecs import hookimpl

    # Every fault is logged at WARNING by design; the table is the soak's output.
    logging.basicConfig(level=logging.ERROR)

    lock = threading.Lock()
    delivered: collections.Counter[Key] = collections.Counter()
    gaps: list[tuple[str, str, int, int]] = []

    class Tally:
        @hookimpl
        def cmcsync_on_event(self, event: Any, client: Any) -> None:
            with lock:
                delivered[(event.channel, params_key(event.params), event.ts)] += 1

        @hookimpl
        def cmcsync_on_gap(
            self, client: Any, channel: str, params: Any, start_ms: int, end_ms: int
        ) -> None:
            with lock:
                gaps.append((channel, params_key(dict(params)), start_ms, end_ms))

    client = cmcsync.Client(
        api_key=key,
        url=url,
        autoload=False,
        plugins=[Tally()],
        backoff=cmcsync.Backoff(base=0.05, cap=0.5, long_base=1.0),
        timeouts=cmcsync.Timeouts(pong=1.0, ack=10, close=5),
        liveness=cmcsync.Liveness(cadences={PRICE: 0.2}, factor=3, check_interval=0.1),
    )

    def report(final: bool = False) -> None:
        with lock:
            batch = list(delivered.items())
            delivered.clear()
            found = list(gaps)
            gaps.clear()
        stats = client.stats()
        out.put(
            {
                "delivered": batch,
                "gaps": found,
                "reconnects": stats["reconnects"],
                "events": stats["events"],
                "malformed": stats["malformed"],
                "rss": rss_mb(),
                "threads": threading.active_count(),
                "cmcsync_threads": sum(
                    t.name.startswith("cmcsync-") for t in threading.enumerate()
                ),
                "final": final,
            }
        )

    client.subscribe(PRICE, crypto_ids=PRICE_IDS)
    for channel, params in OTHERS:
        client.subscribe(channel, **params)
    started = time.monotonic()
    baseline = None
    while not stop.wait(window):
        if trace and baseline is None and time.monotonic() - started >= warmup:
            tracemalloc.start(8)
            baseline = tracemalloc.take_snapshot()
        report()
    report(final=True)
    if baseline is not None:
        grown = tracemalloc.take_snapshot().compare_to(baseline, "traceback")[:8]
        out.put(
            {
                "memory": [
                    f"{stat.size_diff / 1024:+.0f} KiB {stat.count_diff:+d} blocks "
                    f"at {' <- '.join(str(f) for f in stat.traceback[-4:])}"
                    for stat in grown
                ]
            }
        )
    client.close()
    # Threads the client started must all be gone once close() returned.
    out.put({"leaked": [t.name for t in threading.enumerate() if t.name.startswith("cmcsync-")]})


# --- the server, the faults and the books, in this process -----------------------------------


class Books:
    """Frames the server wrote against frames the client delivered, per settled window."""

    def __init__(self) -> None:
        self.sent: collections.Counter[Key] = collections.Counter()
        self.delivered: collections.Counter[Key] = collections.Counter()
        self.gaps: dict[Sub, list[tuple[int, int]]] = collections.defaultdict(list)
        self.total_sent = 0
        self.total_delivered = 0
        self.lost = 0
        self.in_gaps = 0
        self.extra = 0
        self.gap_count = 0
        self.lost_examples: list[str] = []

    def add_sent(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            if frame.get("type") == "data":
                key = (frame["channel"], params_key(frame["params"]), frame["ts"])
                self.sent[key] += 1
                self.total_sent += 1

    def add_report(self, report: dict[str, Any]) -> None:
        for key, count in report["delivered"]:
            self.delivered[tuple(key)] += count  # type: ignore[index]
            self.total_delivered += count
        for channel, params, start, end in report["gaps"]:
            self.gaps[(channel, params)].append((start, end))
            self.gap_count += 1

    def _describe_loss(self, channel: str, params: str, ts: int) -> str:
        """A lost frame, with where the nearest reported gap of its subscription lies."""
        spans = self.gaps.get((channel, params), [])
        nearest = min(
            spans, key=lambda span: min(abs(span[0] - ts), abs(span[1] - ts)), default=None
        )
        where = "no gap reported"
        if nearest is not None:
            where = f"nearest gap [{nearest[0] - ts:+d} ms, {nearest[1] - ts:+d} ms] from it"
        return f"{channel} {params} ts={ts}: {where}"

    def settle(self, before_ms: int) -> None:
        """Judge every frame with ``ts`` before ``before_ms`` and forget it."""
        for key in [k for k in self.sent if k[2] < before_ms]:
            missing = self.sent.pop(key) - self.delivered.pop(key, 0)
            if missing < 0:
                self.extra -= missing
            elif missing > 0:
                channel, params, ts = key
                if any(s <= ts <= e for s, e in self.gaps.get((channel, params), ())):
                    self.in_gaps += missing
                else:
                    self.lost += missing
                    if len(self.lost_examples) < 10:
                        self.lost_examples.append(self._describe_loss(channel, params, ts))
        for key in [k for k in self.delivered if k[2] < before_ms]:
            self.extra += self.delivered.pop(key)
        for spans in self.gaps.values():
            spans[:] = [(s, e) for s, e in spans if e >= before_ms - 600_000]


def drain_sent(sim: Any) -> Iterator[dict[str, Any]]:
    """Take the frames the simulator recorded as written, and forget them there.

    The simulator keeps every frame for tests; a soak must not. Its ``_send`` may take back
    the last frame of an open connection if the write fails, so that one stays.
    """
    board = sim._board
    with board.cond:
        for conn in board.all:
            frames = conn._sent
            keep = 0 if conn._closed else 1
            if len(frames) > keep:
                taken = frames[: len(frames) - keep]
                del frames[: len(frames) - keep]
                yield from taken


def inject(sim: Any, fault: str, stop: threading.Event) -> None:
    """Apply one fault of :data:`FAULTS` to every connection."""
    if fault.startswith("close"):
        sim.close_all(int(fault.split()[1]), "soak")
    elif fault == "drop":
        sim.drop_all()
    elif fault == "silence":
        sim.silence(True)
        stop.wait(2.0)
        sim.silence(False)
    elif fault == "stall":
        sim.stall(PRICE, {"crypto_ids": PRICE_IDS[int(time.monotonic()) % len(PRICE_IDS)]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run")
    parser.add_argument("--speed", type=float, default=200.0, help="simulator speed")
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--window", type=float, default=10.0, help="seconds between reports")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before judging")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before RSS counts")
    parser.add_argument("--rss-budget", type=float, default=10.0, help="allowed MB of growth")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--trace-memory",
        dest="trace",
        action="store_true",
        help="trace the client's allocations after the warm-up and show what grew",
    )
    args = parser.parse_args(argv)

    from cmcsync.testing import Simulator

    key = "soak-key"
    duration = args.minutes * 60
    tail = min(args.settle, duration / 4)  # the last stretch runs without faults
    context = multiprocessing.get_context("spawn")
    reports: Any = context.Queue()
    stop_client = context.Event()
    stop_faults = threading.Event()
    books = Books()
    rows: list[tuple[float, int, int, int, float, int, int, int, int]] = []
    leaked: list[str] | None = None
    memory: list[str] = []
    faults_done: collections.Counter[str] = collections.Counter()

    with Simulator(api_keys=(key,), speed=args.speed, seed=args.seed, ping_interval_ms=500) as sim:
        child = context.Process(
            target=client_main,
            args=(sim.url, key, args.window, args.warmup, args.trace, reports, stop_client),
            name="soak-client",
        )
        started = time.monotonic()
        child.start()

        def faults() -> None:
            index = 0
            while not stop_faults.wait(args.fault_every):
                if time.monotonic() - started > duration - tail:
                    return
                fault = FAULTS[index % len(FAULTS)]
                index += 1
                try:
                    inject(sim, fault, stop_faults)
                    faults_done[fault] += 1
                except (RuntimeError, ValueError, TimeoutError) as exc:
                    sys.stderr.write(f"fault {fault} failed: {exc!r}\n")

        injector = threading.Thread(target=faults, name="soak-faults")
        injector.start()
        header = (
            f"{'time s':>7} {'events':>8} {'/s':>6} {'reconn':>6} {'RSS MB':>7} "
            f"{'threads':>7} {'cmcsync':>7} {'lost':>5} {'in gap':>6}"
        )
        say(header)
        last_events = 0
        final_seen = False
        try:
            while not final_seen:
                if time.monotonic() - started >= duration:
                    stop_client.set()
                try:
                    report = reports.get(timeout=1.0)
                except queue.Empty:
                    if not child.is_alive():
                        raise RuntimeError("the client process died") from None
                    continue
                if "leaked" in report:
                    leaked = report["leaked"]
                    break
                if "memory" in report:
                    memory = report["memory"]
                    continue
                books.add_sent(list(drain_sent(sim)))
                books.add_report(report)
                now_ms = int(time.time() * 1000)
                final_seen = report["final"]
                books.settle(now_ms - (2_000 if final_seen else int(args.settle * 1000)))
                elapsed = time.monotonic() - started
                rate = (report["events"] - last_events) / args.window
                last_events = report["events"]
                row = (
                    elapsed,
                    report["events"],
                    int(rate),
                    report["reconnects"],
                    report["rss"],
                    report["threads"],
                    report["cmcsync_threads"],
                    books.lost,
                    books.in_gaps,
                )
                rows.append(row)
                say(
                    f"{row[0]:7.0f} {row[1]:8d} {row[2]:6d} {row[3]:6d} {row[4]:7.1f} "
                    f"{row[5]:7d} {row[6]:7d} {row[7]:5d} {row[8]:6d}"
                )
            while leaked is None:
                report = reports.get(timeout=30)
                memory = report.get("memory", memory)
                leaked = report.get("leaked")
        finally:
            stop_faults.set()
            stop_client.set()
            injector.join()
            child.join(30)

    warm = [r for r in rows if r[0] >= args.warmup] or rows
    rss = [r[4] for r in warm]
    growth = rss[-1] - rss[0] if rss else 0.0
    threads = [r[6] for r in rows]
    say()
    say(f"faults injected:        {sum(faults_done.values())} {dict(sorted(faults_done.items()))}")
    say(f"data frames sent:       {books.total_sent}")
    say(f"events delivered:       {books.total_delivered}")
    say(f"lost outside gaps:      {books.lost} {books.lost_examples}")
    say(f"missing inside gaps:    {books.in_gaps} (over {books.gap_count} reported gaps)")
    say(f"delivered, not sent:    {books.extra}")
    say(f"not judged (last 2 s):  {sum(books.sent.values())}")
    say(f"reconnects:             {rows[-1][3] if rows else 0}")
    say(f"RSS after warm-up:      {min(rss):.1f} .. {max(rss):.1f} MB, growth {growth:+.1f} MB")
    say(f"cmcsync threads:        {min(threads)} .. {max(threads)}; after close: {leaked}")
    for line in memory:
        say(f"  grew: {line}")
    ok = books.lost == 0 and not leaked and growth < args.rss_budget and child.exitcode == 0
    say("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
