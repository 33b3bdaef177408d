"""``cmcsync simulate``: the simulator as a server, its banner, faults and a clean stop."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator

import pytest

import cmcsync
from cmcsync.testing import EventRecorder
from tests.test_cli import assert_no_traceback, run_cli, start_cli

PRICE = "market@crypto_latest_price"


def read_banner(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The URL the simulator prints on its first line, and its whole banner."""
    assert proc.stdout is not None
    lines = []
    while not lines or "Ctrl-C stops the simulator" not in lines[-1]:
        line = proc.stdout.readline()
        assert line, f"the simulator ended early: {lines}"
        lines.append(line)
    match = re.search(r"listening on (ws://127\.0\.0\.1:\d+/v1)", lines[0])
    assert match, f"no URL in {lines[0]!r}"
    return match.group(1), "".join(lines)


def read_url(proc: subprocess.Popen[str]) -> str:
    return read_banner(proc)[0]


@pytest.fixture
def server() -> Iterator[subprocess.Popen[str]]:
    proc = start_cli(
        "simulate",
        "--port",
        "0",
        "--speed",
        "200",
        "--key",
        "app-key",
        "--fault",
        "every=400ms,close=1012",
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert_no_traceback(err)
    return out, err


def test_an_app_streams_from_it_and_sees_the_scheduled_faults(
    server: subprocess.Popen[str],
) -> None:
    url, banner = read_banner(server)
    recorder = EventRecorder()
    client = cmcsync.Client(
        api_key="app-key",
        url=url,
        autoload=False,
        plugins=[recorder],
        backoff=cmcsync.Backoff(base=0.05, cap=0.2),
        timeouts=cmcsync.Timeouts(close=2.0),
    )
    try:
        client.subscribe(PRICE, crypto_ids=[1, 1027])
        recorder.wait_for_events(2, timeout=10)
        recorder.wait_for(
            lambda: [c for c in recorder.hook_calls("cmcsync_on_disconnect") if c["code"] == 1012],
            timeout=10,
        )
        recorder.wait_for(lambda: recorder.hook_calls("cmcsync_on_gap"), timeout=10)
    finally:
        client.close()
    _, err = stop(server, signal.SIGTERM)
    assert "cmcsync stream crypto_latest_price --crypto-ids 1,1027 --url " + url in banner
    assert "app-key" not in banner, "keys given with --key are not printed back"
    assert "fault: closed 1 connection(s) with close 1012 (Frame sink cancellation)" in err
    assert "connection 1 opened" in err and "connection 1: 2 subscription(s)" in err
    assert err.rstrip().endswith("simulator stopped")


def test_ctrl_c_stops_it_cleanly(server: subprocess.Popen[str]) -> None:
    read_url(server)
    stop(server, signal.SIGINT)


def test_the_default_key_is_shown_with_a_command_to_try() -> None:
    result = run_cli("simulate", "--port", "0", "--duration", "0.2")
    assert result.returncode == 0, result.stderr
    assert "API keys accepted: test-key" in result.stdout
    assert re.search(r"--url ws://127\.0\.0\.1:\d+/v1 --api-key test-key", result.stdout)


def test_a_wrong_key_is_refused_and_reported(server: subprocess.Popen[str]) -> None:
    url = read_url(server)
    result = run_cli(
        "stream",
        "crypto_latest_price",
        "--crypto-ids",
        "1",
        "--url",
        url,
        "--api-key",
        "not-the-key",
    )
    assert result.returncode == 3
    _, err = stop(server, signal.SIGTERM)
    assert "connection 1 refused: close 4100 (API key invalid)" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--fault", "every=30s,clos=1012"], "unknown part 'clos'"),
        (["--fault", "at=10s"], "give exactly one action"),
        (["--fault", "every=1s,close=1005"], "cannot be sent in a close frame"),
        (["--fault", "close=1012"], "say when"),
        (["--key-status", "old=200"], "--key-status"),
        (["--speed", "0"], "--speed"),
    ],
)
def test_bad_flags_are_refused_with_the_syntax(args: list[str], expected: str) -> None:
    result = run_cli("simulate", "--port", "0", *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "hint:" in result.stderr


def test_a_busy_port_says_how_to_pick_another(server: subprocess.Popen[str]) -> None:
    port = read_url(server).rsplit(":", 1)[1].split("/")[0]
    result = run_cli("simulate", "--port", port, "--duration", "1")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port 0 picks a free one" in result.stderr
