"""``cmcsync demo``: plain lines when piped, a live table in a terminal, a clean way out."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from cmcsync.cli._demo import COINS
from cmcsync.cli._screen import Health, Quote, Style, render, spark, visible_cut
from tests.test_cli import assert_no_traceback, cli_env, run_cli

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A value the server left out of a push (before any push had it) shows as a dash.
_LINE = re.compile(r"^\d\d:\d\d:\d\d  (\w+) +\$[\d,.]+ [▲▼ ] +(?:[+-]\d+\.\d\d%|—)  vol ")


def test_piped_it_prints_one_plain_line_per_update() -> None:
    result = run_cli("demo", "--duration", "1.5", "--speed", "50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 10
    symbols = set()
    for line in lines:
        match = _LINE.match(line)
        assert match, line
        symbols.add(match.group(1))
    assert symbols == {symbol for symbol, _ in COINS.values()}
    assert "\x1b" not in result.stdout
    assert "demo over:" in result.stderr and "cmcsync stream --help" in result.stderr


def test_a_fault_is_reported_and_the_demo_goes_on() -> None:
    result = run_cli(
        "demo",
        "--duration",
        "1.5",
        "--speed",
        "50",
        "--plain",
        "--crypto-ids",
        "1,1027",
        "--fault",
        "at=0.3s,close=1012",
    )
    assert result.returncode == 0, result.stderr
    assert "fault: closed 1 connection(s) with close 1012" in result.stderr
    assert "1 reconnect(s)" in result.stderr


def test_a_bad_id_list_is_a_usage_error() -> None:
    result = run_cli("demo", "--crypto-ids", "btc")
    assert result.returncode == 2
    assert "--crypto-ids" in result.stderr and "hint:" in result.stderr


def _read_until(fd: int, proc: subprocess.Popen[bytes], wanted: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("how", ["duration", "ctrl-c", "q"])
def test_in_a_terminal_it_draws_a_table_and_restores_the_screen(how: str) -> None:
    import pty

    parent, child = pty.openpty()
    args = ["demo", "--speed", "50"] + (["--duration", "1.5"] if how == "duration" else [])
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "24"})
    env.pop("NO_COLOR")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmcsync", *args],
        stdin=child,
        stdout=child,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(child)
    try:
        screen = _read_until(parent, proc, b"connected", timeout=15)
        assert b"\x1b[?1049h" in screen and b"\x1b[?25l" in screen, "alternate screen, no cursor"
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        elif how == "q":
            os.write(parent, b"q")
        rest = _read_until(parent, proc, b"\x1b[?1049l", timeout=15)
        proc.wait(timeout=15)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(parent)
    assert proc.returncode == 0, err
    assert_no_traceback(err)
    assert rest.endswith(b"\x1b[?25h\x1b[?1049l"), "cursor shown and screen restored last"
    text = _ANSI.sub("", screen.decode("utf-8", "replace"))
    assert "cmcsync demo" in text and "connected" in text
    for symbol in ("BTC", "ETH", "DOGE"):
        assert symbol in text
    assert "demo over:" in err


# --- the screen, in process ------------------------------------------------------------------


def _quotes(now: float) -> list[Quote]:
    return [
        Quote(
            crypto_id=cid,
            symbol=symbol,
            name=name,
            price=1000.0 / (i + 1),
            change_24h=(-1) ** i * 2.5,
            volume_24h=1e9,
            market_cap=1e11 / (i + 1),
            direction=1 if i % 2 else -1,
            updated=now - i,
            changed=now - 0.1,
            history=tuple(100.0 + j % 7 for j in range(40)),
        )
        for i, (cid, (symbol, name)) in enumerate(COINS.items())
    ]


@pytest.mark.parametrize("width", [12, 24, 40, 60, 80, 100, 140, 200])
def test_every_line_fits_the_terminal(width: int) -> None:
    now = 1000.0
    health = Health(
        state="reconnecting",
        detail="close 1012 (Frame sink cancellation)",
        active=3,
        wanted=10,
        rate=12.5,
        events=1234,
        url="ws://127.0.0.1:1/v1",
    )
    for color in (False, True):
        lines = render(
            _quotes(now),
            health,
            width=width,
            height=40,
            style=Style(color),
            stale_after=3.0,
            now=now,
        )
        for line in lines:
            assert len(_ANSI.sub("", line)) <= width, (width, line)
        if width < 40:
            continue  # it fits; what is left to read does not matter much
        text = "\n".join(_ANSI.sub("", line) for line in lines)
        assert "BTC" in text and "$1,000.00" in text and "+2.50%" in text
        assert "reconnecting" in text


def test_wide_terminals_get_more_columns() -> None:
    now = 1000.0
    health = Health(state="connected")
    narrow = render(
        _quotes(now), health, width=60, height=40, style=Style(False), now=now, stale_after=3.0
    )
    wide = render(
        _quotes(now), health, width=140, height=40, style=Style(False), now=now, stale_after=3.0
    )
    assert "MARKET CAP" not in narrow[2] and "TREND" not in narrow[2]
    for title in ("#", "NAME", "VOLUME 24H", "MARKET CAP", "TREND", "UPDATED"):
        assert title in wide[2]


def test_a_short_terminal_keeps_the_health_line() -> None:
    lines = render(
        _quotes(1000.0),
        Health(state="connected"),
        width=100,
        height=9,
        style=Style(False),
        stale_after=3.0,
        now=1000.0,
    )
    assert len(lines) <= 9
    assert any("connected" in line for line in lines)


def test_visible_cut_keeps_escapes_and_counts_only_what_shows() -> None:
    line = "\x1b[1mBTC\x1b[0m  \x1b[32m+2.50%\x1b[0m"
    assert visible_cut(line, 100) == line
    cut = visible_cut(line, 6)
    assert _ANSI.sub("", cut) == "BTC  +"
    assert cut.endswith("\x1b[0m")


def test_sparkline() -> None:
    assert spark([1.0, 2.0, 3.0], 10) == "▁▅█"
    assert spark([5.0, 5.0], 10) == "▄▄"
    assert len(spark([float(i) for i in range(50)], 16)) == 16
