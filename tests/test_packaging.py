"""What ships: version, changelog, licence, entry points, and every data file in the wheel.

The full check (build the sdist and the wheel, install the wheel in a fresh virtual
environment, run a smoke test there) is in ``.ci/gates``; these tests catch the usual causes
of its failure in a second.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.metadata
import re
from pathlib import Path

import pytest

import cmcsync

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cmcsync"

KEEP_A_CHANGELOG_SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


@pytest.fixture(scope="module")
def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def _list(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


def test_the_version_is_declared_once_and_installed(setup_cfg: configparser.ConfigParser) -> None:
    declared = setup_cfg["metadata"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", declared), declared
    assert importlib.metadata.version("cmcsync") == declared, "reinstall: pip install -e ."
    assert cmcsync.__version__ == declared


def test_every_data_file_of_the_package_is_declared_as_package_data(
    setup_cfg: configparser.ConfigParser,
) -> None:
    """A file under cmcsync/ that is not Python only reaches the wheel if setup.cfg says so."""
    declared: dict[str, list[str]] = {
        package: _list(patterns) for package, patterns in setup_cfg["options.package_data"].items()
    }
    assert "py.typed" in declared.get("cmcsync", [])
    undeclared = []
    for path in PACKAGE.rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(ROOT)
        package_dir = relative.parent
        while package_dir != Path(".") and not (ROOT / package_dir / "__init__.py").exists():
            package_dir = package_dir.parent
        package = ".".join(package_dir.parts)
        inside = relative.relative_to(package_dir).as_posix()
        patterns = declared.get(package, []) + declared.get("*", [])
        if not any(fnmatch.fnmatch(inside, pattern) for pattern in patterns):
            undeclared.append(str(relative))
    assert not undeclared, f"not in [options.package_data] of setup.cfg: {undeclared}"


def test_the_entry_points_resolve(setup_cfg: configparser.ConfigParser) -> None:
    scripts = importlib.metadata.entry_points(group="console_scripts")
    (command,) = [ep for ep in scripts if ep.name == "cmcsync" and ep.value.startswith("cmcsync.")]
    assert callable(command.load())
    plugins = importlib.metadata.entry_points(group="pytest11")
    (fixtures,) = [ep for ep in plugins if ep.name == "cmcsync"]
    assert fixtures.load().__name__ == "cmcsync.testing.pytest_plugin"


def test_the_licence_is_shipped_and_is_the_declared_one(
    setup_cfg: configparser.ConfigParser,
) -> None:
    assert setup_cfg["metadata"]["license"] == "MIT"
    assert "LICENSE" in _list(setup_cfg["metadata"]["license_files"])
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_the_changelog_follows_keep_a_changelog(setup_cfg: configparser.ConfigParser) -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "keepachangelog.com" in text
    releases = re.findall(r"^## \[([^\]]+)\](.*)$", text, flags=re.MULTILINE)
    assert releases and releases[0][0] == "Unreleased", "the first section is [Unreleased]"
    for name, rest in releases[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", name), f"release heading [{name}]"
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"[{name}] needs ' - YYYY-MM-DD'"
    sections = set(re.findall(r"^### (.+)$", text, flags=re.MULTILINE))
    assert sections <= KEEP_A_CHANGELOG_SECTIONS, sections - KEEP_A_CHANGELOG_SECTIONS
    version = setup_cfg["metadata"]["version"]
    released = [name for name, _ in releases[1:]]
    assert not released or released[0] == version, (
        f"setup.cfg says {version} but the latest release in CHANGELOG.md is {released[0]}"
    )


def test_the_readme_is_the_long_description(setup_cfg: configparser.ConfigParser) -> None:
    assert setup_cfg["metadata"]["long_description"] == "file: README.md"
    assert setup_cfg["metadata"]["long_description_content_type"] == "text/markdown"
    assert (ROOT / "README.md").read_text(encoding="utf-8").startswith("# cmcsync")
