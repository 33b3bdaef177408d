"""``cmcsync plugins``: what every client would load, with versions and hooks."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from tests.test_cli import run_cli
from tests.test_cli_record import install_probe


def _example_installed() -> bool:
    return any(ep.name == "example" for ep in importlib.metadata.entry_points(group="cmcsync"))


@pytest.mark.skipif(
    not _example_installed(),
    reason="cmcsync-example is not installed: python3 -m pip install ./plugins/cmcsync-example",
)
def test_lists_the_example_plugin_with_version_and_hooks() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    version = importlib.metadata.version("cmcsync-example")
    line = next(line for line in result.stdout.splitlines() if line.startswith("example "))
    assert f"cmcsync-example {version}" in line
    for hook in ("on_crypto_latest_price", "on_gap", "subscriptions"):
        assert hook in line


def test_json_output_for_scripts(tmp_path: Path) -> None:
    result = run_cli("plugins", "--format", "json", env=install_probe(tmp_path))
    assert result.returncode == 0, result.stderr
    probe = next(p for p in json.loads(result.stdout) if p["name"] == "probe")
    assert probe == {
        "name": "probe",
        "distribution": "cmcsync-probe",
        "version": "0.3",
        "hooks": ["cmcsync_on_event"],
    }


def test_the_environment_switches_are_explained(tmp_path: Path) -> None:
    env = install_probe(tmp_path)
    narrowed = run_cli("plugins", env={**env, "CMCSYNC_PLUGINS": "probe"})
    assert [line.split()[0] for line in narrowed.stdout.splitlines()[1:-1]] == ["probe"]
    assert "CMCSYNC_PLUGINS=probe: clients load only these" in narrowed.stderr
    off = run_cli("plugins", env={**env, "CMCSYNC_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert off.returncode == 0
    assert off.stdout == "no cmcsync plugins installed\n"
    assert "CMCSYNC_DISABLE_PLUGIN_AUTOLOAD is set" in off.stderr


def test_a_broken_plugin_is_named_with_what_to_do(tmp_path: Path) -> None:
    env = install_probe(tmp_path)
    (tmp_path / "cmcsync_probe.py").write_text("raise ImportError('probe cannot start')\n")
    result = run_cli("plugins", env=env)
    assert result.returncode == 1
    assert "probe cannot start" in result.stderr
    assert "CMCSYNC_PLUGINS" in result.stderr and "hint:" in result.stderr
