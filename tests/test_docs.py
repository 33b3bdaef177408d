"""The documentation: complete reference, current signatures, and code samples that run.

The reference pages are checked twice: in their sources (fast, precise messages) and as
built by Sphinx (what a reader sees). The samples in ``docs/samples`` are run as the docs tell
readers to run them, each in its own interpreter, all at once with the build.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

import cmcsync
from cmcsync import events, exceptions, hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
SAMPLES = DOCS / "samples"
DEADLINE = 120.0

SPECS: dict[str, Callable[..., object]] = {
    name: func
    for name, func in vars(hookspecs).items()
    if callable(func) and hasattr(func, f"{hookspecs.PROJECT_NAME}_spec")
}
EVENT_CLASSES = {
    name: obj
    for name, obj in vars(events).items()
    if name in events.__all__ and isinstance(obj, type) and attrs.has(obj)
}
EXCEPTIONS = {name: getattr(exceptions, name) for name in exceptions.__all__}

#: What each sample must print (every line a regular expression matched in order).
EXPECTED_OUTPUT: dict[str, list[str]] = {
    "tutorial_stream.py": [r"^ +(1|1027) +\d+\.\d\d USD at \d\d:\d\d:\d\d$"] * 6,
    "tutorial_plugin.py": [r"^prices for \[1, 1027, 5426\]$"],
    "plugin_errors.py": [
        (
            r"^Broken raised RuntimeError\('a bug in this plugin'\) in cmcsync_on_event; "
            r"switched off: False$"
        ),
        r"switched off: False$",
        r"switched off: True$",
        r"^plugin errors: \{'Broken': 3\}$",
        r"^the counter still got 10 events$",
    ],
    "reconnect.py": [
        r"^connected \(reconnect=False\)$",
        r"^subscription \{'crypto_ids': 1\} is active$",
        r"^disconnected \(code=None, will_reconnect=True\)$",
        r"^connected \(reconnect=True\)$",
        r"^data for \{'crypto_ids': 1\} may be missing for \d+ ms$",
        r"^reconnects: 1$",
        r"^disconnected \(code=1000, will_reconnect=False\)$",
    ],
    "fatal_key.py": [r"^stopped: close code 4100: close 4100 ", r"^state: failed$"],
    "subscribe_errors.py": [
        r"^ConfigError \(interval\): interval '2m' is not valid for onchain@kline",
        r"^SubscriptionError 2302 PROTOCOL: Channel not available on your plan\.$",
        r"^still wanted: 0$",
    ],
    "settings.py": [
        r"^<cmcsync\.Client wss://pro-stream\.coinmarketcap\.com/v1 new>$",
        r"^refused: ack must be > 0, got 0$",
    ],
    "logging_setup.py": [
        r"^WARNING cmcsync\.client: skipped a frame: frame is not valid JSON",
        r"^malformed frames: \{'not_json': 1\}$",
    ],
    "slow_consumer.py": [
        r"^received \d+ prices, handed \d+ to the plugin$",
        r"^replaced by a newer one while queued: [1-9]\d*$",
        r"^times the reader had to wait for room: 0$",
    ],
    "tls_proxy.py": [r"^refused \(url\): refusing plain ws:// to stream\.example\.com"],
}


def _sources(directory: Path = DOCS) -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.rst"))
        if "_build" not in path.parts
    }


def _directive_targets(kinds: str, text: str) -> set[str]:
    return set(re.findall(rf"^\.\. (?:{kinds})::\s+(\S+)\s*$", text, flags=re.MULTILINE))


# -------------------------------------------------------------------------------------------
# The reference, in its sources
# -------------------------------------------------------------------------------------------


def test_every_hook_has_its_own_reference_entry() -> None:
    documented = _directive_targets("autofunction", (REFERENCE / "hooks.rst").read_text())
    expected = {f"cmcsync.hookspecs.{name}" for name in SPECS}
    assert not expected - documented, f"hooks missing from hooks.rst: {expected - documented}"
    assert not documented - expected, f"hooks.rst documents no such hook: {documented - expected}"


def test_every_event_class_has_its_own_reference_entry() -> None:
    documented = _directive_targets("autoclass", (REFERENCE / "events.rst").read_text())
    missing = [
        name
        for name in EVENT_CLASSES
        if f"cmcsync.events.{name}" not in documented and f"cmcsync.{name}" not in documented
    ]
    assert not missing, f"event classes missing from events.rst: {missing}"


def test_every_exception_is_in_the_reference_and_in_the_tree() -> None:
    documented = _directive_targets("autoexception", (REFERENCE / "exceptions.rst").read_text())
    missing = [name for name in EXCEPTIONS if f"cmcsync.{name}" not in documented]
    assert not missing, f"exceptions missing from exceptions.rst: {missing}"
    # The tree drawn in the module docstring is shown on the page: it must be complete.
    tree = exceptions.__doc__ or ""
    assert not [name for name in EXCEPTIONS if name not in tree]


def test_hook_signatures_written_in_the_docs_are_current() -> None:
    """``cmcsync_on_gap(channel, params, start_ms, end_ms)`` in prose must name real arguments."""
    stale = []
    texts = {**_sources(), **{p: p.read_text() for p in SAMPLES.glob("*.py")}}
    for path, text in texts.items():
        for name, args in re.findall(r"\b(cmcsync_\w+)\(([^()]*)\)", text):
            if name not in SPECS:
                if name.startswith(("cmcsync_on_", "cmcsync_subscriptions")):
                    stale.append(f"{path.name}: no hook named {name}")
                continue
            known = set(inspect.signature(SPECS[name]).parameters) | {"self"}
            bare = args
            while re.search(r"\[[^\[\]]*\]", bare):  # drop the brackets of annotations
                bare = re.sub(r"\[[^\[\]]*\]", "", bare)
            for arg in filter(None, (a.strip() for a in bare.split(","))):
                word = re.match(r"\*{0,2}(\w+)", arg)
                if word is not None and word.group(1) not in known:
                    stale.append(f"{path.name}: {name} has no argument {word.group(1)!r}")
    assert not stale, "stale hook signatures in the docs:\n" + "\n".join(stale)


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "cmcsync").rglob("*.py"))
    name = r"""["']([A-Z][A-Z0-9_]+)["']"""
    used = set(re.findall(rf"(?:environ(?:\.get)?[(\[]|getenv\()\s*{name}", code))
    used |= set(re.findall(rf"^\s*\w+_ENV\b[^=\n]*=\s*{name}", code, flags=re.MULTILINE))
    documented: set[str] = set()
    for text in _sources().values():
        documented |= _directive_targets("envvar", text)
    assert "CMC_PRO_API_KEY" in used
    assert not used - documented, f"undocumented environment variables: {used - documented}"


def test_every_stats_key_is_documented() -> None:
    page = (REFERENCE / "client.rst").read_text()
    client = cmcsync.Client(api_key="docs-key", url="ws://127.0.0.1:9/v1", autoload=False)
    stats = client.stats()
    client.close()
    keys = set(stats) | set(stats["dispatch"])
    missing = sorted(key for key in keys if f"``{key}``" not in page)
    assert not missing, f"stats() keys missing from reference/client.rst: {missing}"


def test_every_exit_code_of_the_cli_is_documented() -> None:
    from cmcsync.cli import _common

    page = (REFERENCE / "cli.rst").read_text()
    codes = {
        value
        for name, value in vars(_common).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert codes >= {0, 2, 3, 4, 5}
    missing = [code for code in sorted(codes) if f"   * - {code}\n" not in page]
    assert not missing, f"exit codes missing from the table in cli.rst: {missing}"


def test_every_sample_is_checked_and_included_in_the_docs() -> None:
    samples = {p.name for p in SAMPLES.glob("*.py") if not p.name.startswith("test_")}
    assert samples == set(EXPECTED_OUTPUT), "add the sample's expected output above"
    text = "\n".join(_sources().values())
    included = set(re.findall(r"literalinclude:: (?:\.\./)*samples/(\S+)", text))
    unused = {p.name for p in SAMPLES.glob("*.py")} - included
    assert not unused, f"samples no page shows: {unused}"


# -------------------------------------------------------------------------------------------
# The samples and the built reference, run together
# -------------------------------------------------------------------------------------------


@attrs.frozen
class Run:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Run every sample, the sample test file and a Sphinx build at once; wait for all."""
    env = {**os.environ, "CMCSYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("CMC_PRO_API_KEY", None)
    # Samples run as readers run them, but with every warning an error, as in the tests.
    commands: dict[str, list[str]] = {
        name: [sys.executable, "-W", "error", str(SAMPLES / name)] for name in EXPECTED_OUTPUT
    }
    for path in SAMPLES.glob("test_*.py"):
        commands[path.name] = [sys.executable, "-m", "pytest", "-q", str(path)]
    out = tmp_path_factory.mktemp("docs-text")
    try:
        import sphinx  # noqa: F401 - only to know whether the docs can be built here
    except ImportError:
        pass
    else:
        build = ["-m", "sphinx", "-q", "-b", "text", str(DOCS), str(out)]
        commands["sphinx"] = [sys.executable, *build]
    procs = {
        name: subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    results: dict[str, Run] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=DEADLINE)
            results[name] = Run(proc.returncode, stdout, stderr)
        results["sphinx-out"] = Run(0, str(out), "")
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sample", sorted(EXPECTED_OUTPUT))
def test_sample_runs_and_prints_what_the_docs_say(runs: dict[str, Run], sample: str) -> None:
    run = runs[sample]
    assert run.returncode == 0, f"{sample} failed:\n{run.stderr}"
    lines = iter(run.stdout.splitlines())
    for pattern in EXPECTED_OUTPUT[sample]:
        assert any(re.search(pattern, line) for line in lines), (
            f"{sample}: no line matching {pattern!r} (in order) in:\n{run.stdout}"
        )


@pytest.mark.slow
def test_the_plugin_test_sample_passes(runs: dict[str, Run]) -> None:
    run = runs["test_plugin_faults.py"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b2 passed\b", run.stdout)


def _built(runs: dict[str, Run], page: str) -> str:
    if "sphinx" not in runs:
        pytest.skip("Sphinx is not installed: pip install -e '.[docs]'")
    build = runs["sphinx"]
    assert build.returncode == 0, f"the docs do not build:\n{build.stderr}"
    return (Path(runs["sphinx-out"].stdout) / f"{page}.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_built_hook_reference_shows_every_hook_with_its_current_signature(
    runs: dict[str, Run],
) -> None:
    text = _built(runs, "reference/hooks")
    for name, func in SPECS.items():
        args = ", ".join(inspect.signature(func).parameters)
        assert f"cmcsync.hookspecs.{name}({args})" in text, f"{name}({args}) not in the reference"


@pytest.mark.slow
def test_the_built_event_reference_lists_every_class_and_wire_key(runs: dict[str, Run]) -> None:
    text = _built(runs, "reference/events")
    for name, cls in EVENT_CLASSES.items():
        heading = re.search(rf"^class cmcsync\.(events\.)?{name}\b", text, flags=re.MULTILINE)
        assert heading is not None, f"{name} is not on the events page"
        section = text[heading.end() :].split("\nclass ", 1)[0]
        for attribute, key in events.wire_map(cls).items():
            row = re.search(rf'\| "{attribute}" +\| "{re.escape(key)}" +\|', section)
            assert row is not None, f"{name}.{attribute} (wire key {key!r}) not in its table"


@pytest.mark.slow
def test_the_built_exception_reference_lists_every_exception(runs: dict[str, Run]) -> None:
    text = _built(runs, "reference/exceptions")
    for name in EXCEPTIONS:
        assert re.search(rf"^exception cmcsync\.{name}\b", text, flags=re.MULTILINE), name


@pytest.mark.slow
def test_the_built_cli_reference_lists_every_subcommand(runs: dict[str, Run]) -> None:
    from cmcsync.cli import build_parser

    text = _built(runs, "reference/cli")
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    for name in subparsers.choices:
        assert f"\ncmcsync {name}\n====" in text, f"cmcsync {name} is not in the CLI reference"
