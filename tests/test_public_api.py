"""The public surface: exactly these names, each importable and documented in the reference.

A name added to ``__all__`` is a promise to users; this test makes adding (or dropping) one a
deliberate act: update the list below and the reference together.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import cmcsync
import cmcsync.testing
from cmcsync import exceptions

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"

CMCSYNC_ALL = {
    "AuthError",
    "Backoff",
    "CHANNELS",
    "Channel",
    "Client",
    "ClientClosedError",
    "ClientState",
    "CmcsyncError",
    "CmcsyncTimeoutError",
    "ConfigError",
    "ConnectionFailedError",
    "DEFAULT_URL",
    "DecodeError",
    "DispatchConfig",
    "Event",
    "GaveUpError",
    "Liveness",
    "ProtocolError",
    "ServerError",
    "Subscription",
    "SubscriptionError",
    "SubscriptionState",
    "Timeouts",
    "__version__",
    "hookimpl",
}

TESTING_ALL = {
    "FEED",
    "FEED_CHANNELS",
    "EventRecorder",
    "SimConnection",
    "Simulator",
    "free_port",
    "stream_feed",
    "wait_until",
}


def _documented_names() -> set[str]:
    """Every object the reference documents, by full name (``:module:`` options included)."""
    names: set[str] = set()
    directive = re.compile(r"^\.\. (?:py:|auto)(?:\w+)::\s+(\S+)\s*$")
    for path in REFERENCE.rglob("*.rst"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            found = directive.match(line)
            if found is None:
                continue
            name = found.group(1)
            for option in lines[i + 1 :]:
                if not option.startswith(" "):
                    break  # the directive's options end at its first unindented line
                module = re.match(r"^\s+:module:\s+(\S+)", option)
                if module is not None:
                    name = f"{module.group(1)}.{name}"
                    break
            names.add(name)
    return names


def _full_names(package: str, name: str) -> set[str]:
    """The names under which ``package.name`` may be documented: public and where defined."""
    obj = getattr(importlib.import_module(package), name)
    names = {f"{package}.{name}"}
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        names.add(f"{module}.{qualname}")
    for mod_name, mod in list(sys.modules.items()):
        if mod_name.startswith("cmcsync.") and vars(mod).get(name) is obj:
            names.add(f"{mod_name}.{name}")
    return names


def test_cmcsync_exports_exactly_the_public_names() -> None:
    assert set(cmcsync.__all__) == CMCSYNC_ALL
    assert len(cmcsync.__all__) == len(set(cmcsync.__all__)), "a name is listed twice"


def test_cmcsync_testing_exports_exactly_the_test_kit() -> None:
    assert set(cmcsync.testing.__all__) == TESTING_ALL
    assert len(cmcsync.testing.__all__) == len(set(cmcsync.testing.__all__))


@pytest.mark.parametrize(
    ("package", "name"),
    [("cmcsync", n) for n in sorted(CMCSYNC_ALL)]
    + [("cmcsync.testing", n) for n in sorted(TESTING_ALL)],
)
def test_every_public_name_imports_and_is_in_the_reference(package: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import {name}", namespace)  # noqa: S102 - the import users write
    assert namespace[name] is getattr(importlib.import_module(package), name)
    assert _full_names(package, name) & _documented_names(), (
        f"{package}.{name} is public but no page of docs/reference documents it"
    )


def test_every_exception_is_public_and_rooted() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert name in cmcsync.__all__, f"{name} is not importable from cmcsync"
        assert issubclass(cls, cmcsync.CmcsyncError)
        assert name.endswith("Error"), name


def test_the_version_is_the_installed_distribution_version() -> None:
    assert cmcsync.__version__ == importlib.metadata.version("cmcsync")
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", cmcsync.__version__)


def test_the_package_is_marked_as_typed() -> None:
    assert (Path(cmcsync.__file__).parent / "py.typed").is_file()
