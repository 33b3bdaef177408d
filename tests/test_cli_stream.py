"""``cmcsync stream`` against a simulator: data on stdout, progress on stderr, exit codes."""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import socket

import pytest

from cmcsync.testing import Simulator
from tests.conftest import KEY
from tests.test_cli import assert_no_traceback, run_cli, sent_records, start_cli

PRICE = "market@crypto_latest_price"
EVM = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"


def stream(sim: Simulator, *args: str, key: str = KEY, **kwargs: object):  # type: ignore[no-untyped-def]
    return run_cli("stream", *args, "--url", sim.url, "--api-key", key, **kwargs)  # type: ignore[arg-type]


def test_jsonl_prints_exactly_what_the_server_sent(sim: Simulator) -> None:
    result = stream(
        sim, "crypto_latest_price", "--crypto-ids", "1,1027", "--count", "6", "--format", "jsonl"
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(printed) == 6
    assert printed == sent_records(sim, PRICE)[:6]
    assert {p["params"]["crypto_ids"] for p in printed} == {1, 1027}
    assert "connected to" in result.stderr
    assert "6 event(s)" in result.stderr


@pytest.mark.parametrize(
    ("channel", "flags"),
    [
        ("onchain@kline", ["--platform-id", "14", "--address", EVM, "--interval", "1s"]),
        ("onchain@token_metric", ["--platform-id", "14", "--address", EVM]),
        (
            "onchain@holder_wallet_update",
            [
                "--platform-id",
                "16",
                "--wallet-address",
                "6p6xgHyF7AeE6TZkSmFsko444wqoP15icUSqi2jfGiPN",
            ],
        ),
    ],
)
def test_jsonl_for_onchain_channels(sim: Simulator, channel: str, flags: list[str]) -> None:
    result = stream(sim, channel, *flags, "--count", "2", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(printed) == 2
    assert printed == sent_records(sim, channel)[:2]
    assert all(p["channel"] == channel for p in printed)


def test_table_is_one_readable_line_per_event(sim: Simulator) -> None:
    result = stream(sim, "crypto_latest_price", "--crypto-ids", "1027", "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line, sent in zip(lines, sent_records(sim, PRICE), strict=False):
        assert "crypto_latest_price" in line and " 1027 " in line
        shown = re.search(r" price=([0-9.]+) ", line)
        assert shown is not None, line
        assert float(shown.group(1)) == pytest.approx(sent["data"]["price"], abs=1e-4)


@pytest.mark.skipif(
    not any(ep.name == "example" for ep in importlib.metadata.entry_points(group="cmcsync")),
    reason="cmcsync-example is not installed: python3 -m pip install ./plugins/cmcsync-example",
)
def test_with_plugins_their_subscriptions_are_made_but_only_the_channel_is_printed(
    sim: Simulator,
) -> None:
    result = stream(
        sim,
        "kline",
        "--platform-id",
        "14",
        "--address",
        EVM,
        "--interval",
        "1s",
        "--plugins",
        "--count",
        "3",
        "--format",
        "jsonl",
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["channel"] for p in printed] == ["onchain@kline"] * 3
    (conn,) = sim.all_connections()
    channels = {m.get("channel") for m in conn.received if m.get("method") == "subscribe"}
    assert channels == {"onchain@kline", PRICE}, "the example plugin subscribed to prices"


def test_duration_stops_the_stream_with_exit_0(sim: Simulator) -> None:
    result = stream(sim, "crypto_latest_price", "--crypto-ids", "1", "--duration", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("crypto_latest_price") >= 1


def test_the_key_can_come_from_the_environment(sim: Simulator) -> None:
    result = run_cli(
        "stream",
        "crypto_latest_price",
        "--crypto-ids",
        "1",
        "--count",
        "1",
        "--url",
        sim.url,
        env={"CMC_PRO_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert "API key from CMC_PRO_API_KEY" in result.stderr
    assert KEY not in result.stderr.replace("API key from", "")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["onchain@kline", "--platform-id", "14", "--address", EVM, "--interval", "2m"],
            "--interval",
        ),
        (["kline", "--platform-id", "14", "--interval", "1m"], "--address"),
        (
            [
                "kline",
                "--crypto-ids",
                "1",
                "--platform-id",
                "14",
                "--address",
                EVM,
                "--interval",
                "1m",
            ],
            "--crypto-ids",
        ),
        (["transaction", "--platform-id", "bsc", "--address", EVM], "--platform-id"),
        (["crypto_latest_price", "--crypto-ids", "1,x"], "--crypto-ids"),
        (["crypto_latest_price", "--crypto-ids", "1", "--count", "0"], "--count"),
        (["crypto_latest_price", "--crypto-ids", "1", "--format", "csv"], "--format"),
        (["klines", "--platform-id", "14"], "'kline'"),
    ],
)
def test_usage_errors_name_the_flag_and_send_nothing(
    sim: Simulator, args: list[str], named: str
) -> None:
    result = stream(sim, *args)
    assert result.returncode == 2
    error = next(line for line in result.stderr.splitlines() if "error:" in line)
    assert named in result.stderr, result.stderr
    assert "hint:" in result.stderr
    assert error.startswith("cmcsync stream: error:")
    assert sim.handshakes == []
    assert_no_traceback(result.stderr)


def test_a_missing_key_says_how_to_give_one_or_try_without(sim: Simulator) -> None:
    result = run_cli("stream", "crypto_latest_price", "--crypto-ids", "1", "--url", sim.url)
    assert result.returncode == 2
    assert "no API key" in result.stderr
    assert "CMC_PRO_API_KEY" in result.stderr and "cmcsync demo" in result.stderr


def test_a_wrong_key_exits_3_with_advice_and_is_never_echoed(sim: Simulator) -> None:
    wrong = "0b5c1f27-9f5e-4d7e-8a55-7c1a6a0f3e99"
    result = stream(sim, "crypto_latest_price", "--crypto-ids", "1", key=wrong)
    assert result.returncode == 3, result.stderr
    assert "rejected the API key" in result.stderr
    assert "4100" in result.stderr
    assert "hint: check the key" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert_no_traceback(result.stderr)


def test_a_refused_subscription_exits_5_with_the_server_message(sim: Simulator) -> None:
    sim.fail_next_subscribe(2302, detail="onchain@kline needs the Standard plan")
    result = stream(sim, "kline", "--platform-id", "14", "--address", EVM, "--interval", "1m")
    assert result.returncode == 5, result.stderr
    assert "Channel not available on your plan." in result.stderr
    assert "onchain@kline needs the Standard plan" in result.stderr
    assert "hint:" in result.stderr


def test_an_unreachable_url_gives_up_with_exit_4() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli(
        "stream",
        "crypto_latest_price",
        "--crypto-ids",
        "1",
        "--api-key",
        KEY,
        "--url",
        f"ws://127.0.0.1:{port}/v1",
        "--retries",
        "2",
        "--timeout",
        "10",
    )
    assert result.returncode == 4, result.stderr
    assert "gave up connecting" in result.stderr
    assert "cmcsync doctor" in result.stderr
    assert_no_traceback(result.stderr)


def test_ctrl_c_ends_the_stream_with_exit_0(sim: Simulator) -> None:
    proc = start_cli(
        "stream", "crypto_latest_price", "--crypto-ids", "1", "--url", sim.url, "--api-key", KEY
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # data flows: the command is in its loop
        assert "crypto_latest_price" in first
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert_no_traceback(err)
    assert "event(s) in" in err
