"""The benchmark harness still runs: every peer, every scenario, in its tiny mode.

The numbers of a tiny run mean nothing; what is checked is that the documented command
works end to end (blast server, each peer in its own process, the tables), so the harness
does not rot between the runs that matter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("cmcsync", "cmcsync-inline", "cmcsync-decimal", "wsapp", "recv", "quickstart")
#: Peers measured for throughput only.
THROUGHPUT_ONLY = ("cmcsync-decimal",)


@pytest.mark.slow
def test_the_tiny_run_measures_every_peer_and_prints_the_tables(tmp_path: Path) -> None:
    raw, table = tmp_path / "raw.json", tmp_path / "table.md"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/run.py",
            "--tiny",
            "--json",
            str(raw),
            "--markdown",
            str(table),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(raw.read_text())
    for peer in PEERS:
        (run,) = results["throughput"][peer]
        assert run["messages"] > 0 and run["msgs_per_s"] > 0, (peer, run)
        if peer in THROUGHPUT_ONLY:
            continue
        (lat,) = results["latency"][peer]
        assert lat["lat_p99_us"] >= lat["lat_p50_us"]
        assert results["idle"][peer][0]["cpu_per_100k"] > 0
    assert results["throughput"]["cmcsync"][0]["malformed"] == 0
    assert results["soak"]["rss_end_mb"] > 0
    assert results["subs"]["subscriptions"] == 50
    report = table.read_text()
    assert report.strip() == done.stdout.strip()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    # Two headers, a row per peer, then each cmcsync mode against each of the three others.
    assert len(rows) == 1 + len(PEERS) + 1 + 3 * 3


def test_ratios_are_paired_round_by_round_and_skip_failed_rounds() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import paired_ratio
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    # The machine ran slow in round 2: both peers took twice the CPU, and the ratio held.
    mine = [{"cpu": 1.2}, {"cpu": 2.4}, {"cpu": 1.3}, {"error": "timed out"}]
    other = [{"cpu": 1.0}, {"cpu": 2.0}, {"cpu": 1.0}, {"cpu": 1.0}]
    assert paired_ratio(mine, other, "cpu") == pytest.approx(1.2)
    # A ratio of the medians would have said 1.3 / 1.0.
    assert paired_ratio([{"error": "x"}], other, "cpu") is None
    assert paired_ratio([], [], "cpu") is None
