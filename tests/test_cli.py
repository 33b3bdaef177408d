"""The ``cmcsync`` command as a user meets it: help, errors, and the helpers the CLI tests share.

Every test runs the real command in a subprocess (``python -m cmcsync``), with proxy
variables and any real key removed from its environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from cmcsync._codec import Codec
from cmcsync.channels import CHANNELS
from cmcsync.cli._output import event_record
from cmcsync.testing import Simulator

COMMANDS = ("demo", "stream", "simulate", "record", "replay", "plugins", "doctor")
_DROPPED_ENV = ("CMC_PRO_API_KEY", "CMCSYNC_PLUGINS", "CMCSYNC_DISABLE_PLUGIN_AUTOLOAD")


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command under test: no proxy, no real key, no colour."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k not in _DROPPED_ENV
    }
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cmcsync ARGS`` to the end; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cmcsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        check=False,
    )


def start_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m cmcsync ARGS`` without waiting; pipes for stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-m", "cmcsync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
    )


def sent_records(sim: Simulator, channel: str) -> list[dict[str, object]]:
    """What ``--format jsonl`` must print for the data the simulator sent, in order."""
    codec = Codec()
    row = CHANNELS[channel]
    out = []
    for conn in sim.all_connections():
        for frame in conn.sent:
            if frame.get("type") == "data" and frame.get("channel") == channel:
                event = codec.decode(row, frame["params"], frame["data"], frame["ts"])
                out.append(event_record(event, codec))
    return out


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: cmcsync {command}")
    assert "example" in result.stdout
    assert result.stderr == ""


def test_top_level_help_lists_every_command_and_the_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in result.stdout
    assert "5 subscription rejected" in result.stdout.replace("\n", " ")


def test_stream_help_lists_every_channel_with_its_flags() -> None:
    text = run_cli("stream", "--help").stdout
    for row in CHANNELS.values():
        line = next(line for line in text.splitlines() if line.strip().startswith(row.short + " "))
        for param in row.params:
            assert "--" + param.replace("_", "-") in line, (row.short, line)


def test_no_command_says_where_to_start() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "hint: start with `cmcsync demo`" in result.stderr


def test_a_misspelt_flag_gets_the_right_one_suggested() -> None:
    result = run_cli("stream", "crypto_latest_price", "--crypto-ids", "1", "--cont", "5")
    assert result.returncode == 2
    assert "unknown flag --cont" in result.stderr
    assert "did you mean --count?" in result.stderr


def test_a_key_given_to_a_misspelt_flag_is_not_echoed() -> None:
    secret = "b54bcf4d-1bca-4e8e-9a24-22ff2c3d462c"
    result = run_cli("stream", "crypto_latest_price", "--apikey", secret, "--bogus", secret)
    assert result.returncode == 2
    assert secret not in result.stderr + result.stdout
    assert "--api-key" in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("cmcsync ")
