"""Run every peer against the blast server, in one run on one machine, and print the tables.

    python benchmarks/run.py                 # the full run (about 8 minutes)
    python benchmarks/run.py --quick         # fewer messages, one repeat (about a minute)
    python benchmarks/run.py --tiny          # a smoke test (seconds); numbers mean nothing
    python benchmarks/run.py --json out.json --markdown out.md --rst out.rst

Scenarios, each run for every peer in its own process (see ``peers.py``), the peers
interleaved so that a disturbance on the machine hits them alike:

- **throughput**: the server pushes as fast as the socket takes; msgs/s and CPU seconds per
  100k messages over the messages after the warm-up (median of the repeats);
- **latency**: 5,000 msg/s for a fixed count; p50, p99, p99.9 of send stamp -> the point
  where user code has the message (hook or loop body); median of the repeats;
- **idle CPU**: 1,000 msg/s; CPU seconds per 100k messages, every thread of the process;
  median of the repeats;
- **memory**: RSS at the end of the throughput run; for cmcsync, RSS growth over 1M messages
  (from the warm-up on) and the cost of 1,000 subscriptions.

The first table gives each peer's medians. The ratios of the second are paired: within a
round every peer runs once, back to back, and each ratio is the median over rounds of the
ratio within a round (:func:`paired_ratio`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = ("cmcsync", "cmcsync-inline", "cmcsync-decimal", "wsapp", "recv", "quickstart")
OURS = ("cmcsync", "cmcsync-inline", "cmcsync-decimal")
#: Measured for throughput only: how much exact prices cost.
THROUGHPUT_ONLY = ("cmcsync-decimal",)
OTHERS = ("wsapp", "recv", "quickstart")
LABELS = {
    "cmcsync": "cmcsync (default: dispatcher thread, typed events, 1 plugin)",
    "cmcsync-inline": "cmcsync (inline mode)",
    "cmcsync-decimal": "cmcsync (default mode, decimal=True)",
    "wsapp": "websocket-client WebSocketApp + json.loads",
    "recv": "websocket-client recv() + json.loads loop",
    "quickstart": "CMC quick start (asyncio websockets + json)",
}

SIZES = {
    # throughput count and repeats; idle count (1k/s) and repeats ("timed_repeat"); latency
    # count (5k/s) and repeats: many short rounds, since a neighbour busy on the host for
    # tens of milliseconds spoils a whole round's p99, and the median over rounds then
    # picks an unspoilt one; soak count; subscriptions
    "full": {
        "tp": 300_000,
        "repeat": 3,
        "timed_repeat": 7,
        "lat": 10_000,
        "lat_repeat": 13,
        "idle": 5_000,
        "soak": 1_000_000,
        "subs": 1000,
    },
    "quick": {
        "tp": 100_000,
        "repeat": 1,
        "timed_repeat": 1,
        "lat": 15_000,
        "lat_repeat": 1,
        "idle": 3_000,
        "soak": 200_000,
        "subs": 1000,
    },
    "tiny": {
        "tp": 3_000,
        "repeat": 1,
        "timed_repeat": 1,
        "lat": 500,
        "lat_repeat": 1,
        "idle": 200,
        "soak": 3_000,
        "subs": 50,
    },
}


class Blast:
    """The blast server in its own process, so its CPU is not the client's."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, this directory's script
            [sys.executable, str(HERE / "blast.py"), "--lifetime", "3600"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port = info["port"]
        self.mean_frame_bytes = info["mean_frame_bytes"]
        self.url = f"ws://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the server exits when its stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_peer(peer: str, url: str, *args: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run one peer process; return what it printed (or an ``error``)."""
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter, this directory's script
            [sys.executable, str(HERE / "peers.py"), peer, url, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{peer} did not finish within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"error": f"{peer} exited {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def measure(size: str, peers: Sequence[str], log: Any) -> dict[str, Any]:
    """Run every scenario; return the raw results."""
    cfg = SIZES[size]
    blast = Blast()
    results: dict[str, Any] = {
        "size": size,
        "mean_frame_bytes": blast.mean_frame_bytes,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "throughput": {p: [] for p in peers},
        "latency": {p: [] for p in peers if p not in THROUGHPUT_ONLY},
        "idle": {p: [] for p in peers if p not in THROUGHPUT_ONLY},
    }
    try:
        timeout = 60.0 + cfg["soak"] / 20_000
        for round_ in range(cfg["repeat"]):
            for peer in peers:
                log(f"throughput {peer} (round {round_ + 1}/{cfg['repeat']})")
                res = run_peer(peer, blast.url, "--count", str(cfg["tp"]), "--timeout", "120")
                results["throughput"][peer].append(res)
        timed = [p for p in peers if p not in THROUGHPUT_ONLY]
        for scenario, rate, count, rounds in (
            ("latency", 5000, cfg["lat"], cfg["lat_repeat"]),
            ("idle", 1000, cfg["idle"], cfg["timed_repeat"]),
        ):
            for round_ in range(rounds):
                for peer in timed:
                    log(f"{scenario} at {rate:,} msg/s: {peer} (round {round_ + 1})")
                    results[scenario][peer].append(
                        run_peer(
                            peer,
                            blast.url,
                            *("--count", str(count), "--rate", str(rate), "--timeout", "120"),
                        )
                    )
        if "cmcsync" in peers:
            log(f"memory: cmcsync over {cfg['soak']:,} messages")
            results["soak"] = run_peer(
                "cmcsync",
                blast.url,
                "--count",
                str(cfg["soak"]),
                "--warmup",
                str(max(1, cfg["soak"] // 10)),
                "--rss-every",
                str(max(1, cfg["soak"] // 10)),
                "--timeout",
                str(timeout),
                timeout=timeout + 30,
            )
            log(f"memory: cmcsync with {cfg['subs']:,} subscriptions")
            results["subs"] = run_peer("cmcsync-subs", blast.url, "--count", str(cfg["subs"]))
    finally:
        blast.close()
    return results


# --- reporting ----------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def summarize(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row of numbers per peer."""
    rows: dict[str, dict[str, Any]] = {}
    for peer, runs in results["throughput"].items():
        errors = [r["error"] for r in runs if "error" in r]
        lat = results["latency"].get(peer, [])
        idle = results["idle"].get(peer, [])
        rows[peer] = {
            "msgs_per_s": _median(runs, "msgs_per_s"),
            "cpu_per_100k": _median(runs, "cpu_per_100k"),
            "p50_us": _median(lat, "lat_p50_us"),
            "p99_us": _median(lat, "lat_p99_us"),
            "p999_us": _median(lat, "lat_p999_us"),
            "idle_cpu_per_100k": _median(idle, "cpu_per_100k"),
            "rss_mb": _median(runs, "rss_end_mb"),
            "errors": errors + [r["error"] for r in (*lat, *idle) if "error" in r],
        }
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def paired_ratio(mine: list[dict[str, Any]], other: list[dict[str, Any]], key: str) -> float | None:
    """The median over rounds of ``mine[key] / other[key]`` within each round.

    Within a round the peers run back to back, so a change of the machine's pace that lasts
    longer than a round (another guest on the host, a CPU clocked down) cancels out of each
    ratio; a ratio of medians would mix rounds the machine ran at different paces.
    """
    ratios = [
        a[key] / b[key] for a, b in zip(mine, other, strict=False) if a.get(key) and b.get(key)
    ]
    return statistics.median(ratios) if ratios else None


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def tables(results: dict[str, Any]) -> str:
    """The report, as Markdown tables."""
    rows = summarize(results)
    out = [
        (
            f"Python {results['python']}, {results['cpus']} CPUs, loopback, mixed CMC frames of "
            f"{results['mean_frame_bytes']:.0f} bytes on average ({results['size']} run)."
        ),
        "",
        (
            "| client | msgs/s | CPU s / 100k msgs | p50 µs @5k/s | p99 µs @5k/s "
            "| p99.9 µs @5k/s | CPU s / 100k @1k/s | RSS MB |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for peer, row in rows.items():
        out.append(
            f"| {LABELS[peer]} | {_fmt(row['msgs_per_s'], ',.0f')} "
            f"| {_fmt(row['cpu_per_100k'], '.2f')} | {_fmt(row['p50_us'], ',.0f')} "
            f"| {_fmt(row['p99_us'], ',.0f')} | {_fmt(row['p999_us'], ',.0f')} "
            f"| {_fmt(row['idle_cpu_per_100k'], '.2f')} | {_fmt(row['rss_mb'], '.1f')} |"
        )
    ours = [p for p in OURS if p in rows]
    others = [p for p in OTHERS if p in rows]
    if ours and others:
        out += [
            "",
            (
                "Ratios, cmcsync against each peer (msgs/s: higher is better; p50, p99 and "
                "CPU at 1k/s: lower is better), each the median over rounds of the ratio "
                "within a round:"
            ),
            "",
            "| cmcsync mode | against | msgs/s | p50 | p99 | CPU @1k/s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        tp, lat, idle = results["throughput"], results["latency"], results["idle"]
        for mine in ours:
            for other in others:
                cells = [
                    paired_ratio(tp[mine], tp[other], "msgs_per_s"),
                    paired_ratio(lat.get(mine, []), lat[other], "lat_p50_us"),
                    paired_ratio(lat.get(mine, []), lat[other], "lat_p99_us"),
                    paired_ratio(idle.get(mine, []), idle[other], "cpu_per_100k"),
                ]
                out.append(f"| {mine} | {other} | " + " | ".join(map(_ratio, cells)) + " |")
    soak = results.get("soak")
    if soak and "error" not in soak:
        growth = soak["rss_end_mb"] - soak["rss_warm_mb"]
        out += [
            "",
            f"cmcsync RSS over {soak['messages'] + soak['messages'] // 9:,} messages: "
            f"{soak['rss_warm_mb']:.1f} MB after the warm-up, {soak['rss_end_mb']:.1f} MB at the "
            f"end: growth {growth:+.1f} MB (samples: "
            + ", ".join(f"{mb:.1f}" for _, mb in soak.get("rss_samples", []))
            + ").",
        ]
    elif soak:
        out += ["", f"soak: {soak['error']}"]
    subs = results.get("subs")
    if subs and "error" not in subs:
        out += [
            "",
            (
                f"cmcsync with {subs['subscriptions']:,} subscriptions on "
                f"{subs['connections']} connections: RSS {subs['rss_all_mb']:.1f} MB against "
                f"{subs['rss_one_mb']:.1f} MB with one: {subs['cost_mb']:+.1f} MB."
            ),
        ]
    elif subs:
        out += ["", f"subscriptions: {subs['error']}"]
    errors = [f"{peer}: {e}" for peer, row in rows.items() for e in row["errors"]]
    if errors:
        out += ["", "Errors:", *[f"- {e}" for e in errors]]
    return "\n".join(out)


def to_rst(report: str) -> str:
    """The report with its Markdown tables as reStructuredText list tables (for the docs)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        out.extend([".. list-table::", "   :header-rows: 1", ""])
        for row in table:
            out.append(f"   * - {row[0]}")
            out.extend(f"     - {cell}" for cell in row[1:])
        out.append("")
        table.clear()

    for line in report.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not all(set(cell) <= set("-:") for cell in cells):  # not the alignment row
                table.append(cells)
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="size", const="quick")
    group.add_argument("--tiny", action="store_const", dest="size", const="tiny")
    parser.set_defaults(size="full")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--rst", type=Path, help="also write them as reStructuredText here")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", file=sys.stderr, flush=True)  # noqa: T201

    results = measure(args.size, peers, log)
    report = tables(results)
    print(report)  # noqa: T201 - the report is the output
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.rst:
        args.rst.write_text(to_rst(report) + "\n")
    failed = any(row["errors"] for row in summarize(results).values())
    failed = failed or any("error" in (results.get(k) or {}) for k in ("soak", "subs"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
