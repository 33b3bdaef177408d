"""The hook specifications: one per channel row, each documented with the same template."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from cmcsync import hookspecs
from cmcsync.channels import CHANNELS

SPECS: dict[str, Callable[..., object]] = {
    name: getattr(hookspecs, name)
    for name in dir(hookspecs)
    if hasattr(getattr(hookspecs, name), "cmcsync_spec")
}

LIFECYCLE = {
    "cmcsync_subscriptions": ("client",),
    "cmcsync_on_connect": ("client", "url", "reconnect"),
    "cmcsync_on_disconnect": ("client", "code", "reason", "will_reconnect"),
    "cmcsync_on_subscription_state": ("client", "channel", "params", "state", "error"),
    "cmcsync_on_gap": ("client", "channel", "params", "start_ms", "end_ms"),
    "cmcsync_on_stale": ("client", "channel", "params", "silent_for", "action"),
    "cmcsync_on_close": ("client",),
    "cmcsync_on_error": ("client", "error"),
    "cmcsync_on_plugin_error": ("client", "plugin_name", "hook_name", "error", "disabled"),
    "cmcsync_on_slow_consumer": ("client", "depth", "capacity"),
    "cmcsync_on_event": ("event", "client"),
}


def argnames(name: str) -> tuple[str, ...]:
    return tuple(inspect.signature(SPECS[name]).parameters)


def test_every_channel_row_has_its_own_hook_taking_event_and_client() -> None:
    per_channel = set(SPECS) - set(LIFECYCLE)
    assert per_channel == {row.hook for row in CHANNELS.values()}
    for row in CHANNELS.values():
        assert argnames(row.hook) == ("event", "client"), row.hook
        # The spec documents the channel it serves and its event class.
        doc = inspect.getdoc(SPECS[row.hook]) or ""
        assert f"``{row.name}``" in doc, row.hook
        assert row.event_type.__name__ in doc, row.hook


@pytest.mark.parametrize("name", sorted(LIFECYCLE))
def test_lifecycle_hooks_take_the_documented_arguments(name: str) -> None:
    assert argnames(name) == LIFECYCLE[name]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_follows_the_docstring_template(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    summary = doc.splitlines()[0] if doc else ""
    assert summary and summary.endswith("."), f"{name}: no one-line summary"
    for param in argnames(name):
        assert f":param {param}:" in doc, f"{name}: {param} undocumented"
    for section in ("**Thread**:", "**When**:", "**Returns**:", "**Exceptions**:"):
        assert section in doc, f"{name}: no {section} paragraph"
    assert ".. versionadded:: 0.1" in doc


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"cmcsync_subscriptions"}))
def test_hooks_run_on_the_dispatcher_thread(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    thread = doc.split("**Thread**:")[1].split("**When**")[0]
    assert "``cmcsync-dispatch``" in thread


def test_only_the_subscriptions_hook_returns_something() -> None:
    for name, spec in SPECS.items():
        opts = vars(spec)["cmcsync_spec"]
        assert not opts.get("firstresult"), name
        returns = inspect.signature(spec).return_annotation
        if name == "cmcsync_subscriptions":
            assert returns != "None"
        else:
            assert returns == "None", name


def test_markers_use_the_cmcsync_project_name() -> None:
    assert hookspecs.hookspec.project_name == "cmcsync"
    assert hookspecs.hookimpl.project_name == "cmcsync"
