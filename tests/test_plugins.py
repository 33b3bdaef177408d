"""Plugin managers: one per call, entry points and their switches, validation at registration."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pluggy
import pytest

from cmcsync import hookimpl
from cmcsync.exceptions import ConfigError
from cmcsync.plugins import (
    DISABLE_AUTOLOAD_ENV,
    PLUGINS_ENV,
    PluginManager,
    make_plugin_manager,
    plugin_info,
    register,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(PLUGINS_ENV, raising=False)


class Prices:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def cmcsync_on_crypto_latest_price(self, event: Any) -> None:
        self.seen.append(event)


@attrs.frozen
class FakeDist:
    """An installed distribution made on disk: ``*.dist-info`` with an ``entry_points.txt``."""

    name: str
    modules: dict[str, str]  # entry-point name -> module name


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """A distribution providing two plugins, ``fake`` and ``other``, and a broken one."""
    suffix = uuid.uuid4().hex[:8]
    name = f"fakeplug_{suffix}"
    modules = {"fake": f"fakeplug_a_{suffix}", "other": f"fakeplug_b_{suffix}"}
    plugin_source = textwrap.dedent(
        """
        import cmcsync

        @cmcsync.hookimpl
        def cmcsync_on_event(event):
            pass
        """
    )
    for module in modules.values():
        (tmp_path / f"{module}.py").write_text(plugin_source)
    info = tmp_path / f"{name}-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2\n")
    lines = "".join(f"{ep} = {module}\n" for ep, module in modules.items())
    (info / "entry_points.txt").write_text(
        f"[cmcsync]\n{lines}\n[console_scripts]\nnot-a-plugin = x:y\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield FakeDist(name=name, modules=modules)
    for module in modules.values():
        sys.modules.pop(module, None)


# --- one manager per call -------------------------------------------------------------------


def test_each_call_builds_a_new_manager_with_the_specs() -> None:
    first = make_plugin_manager(autoload=False, plugins=[Prices()])
    second = make_plugin_manager(autoload=False)
    assert first is not second
    assert isinstance(first, pluggy.PluginManager)
    assert [p.name for p in plugin_info(first)] == ["Prices"]
    assert plugin_info(second) == []
    assert second.hook.cmcsync_on_kline.has_spec()


# --- entry points ---------------------------------------------------------------------------


def test_installed_entry_points_are_loaded_with_their_distribution(fake_dist: FakeDist) -> None:
    pm = make_plugin_manager()
    assert pm.has_plugin("fake") and pm.has_plugin("other")
    assert not pm.has_plugin("not-a-plugin")
    info = {i.name: i for i in plugin_info(pm)}["fake"]
    assert (info.distribution, info.version, info.hooks) == (
        fake_dist.name,
        "1.2",
        ("cmcsync_on_event",),
    )


def test_autoload_false_loads_no_entry_point(fake_dist: FakeDist) -> None:
    pm = make_plugin_manager(autoload=False, plugins=[Prices()])
    assert [p.name for p in plugin_info(pm)] == ["Prices"]


def test_the_disable_variable_stops_autoload(
    fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = make_plugin_manager(plugins=[Prices()])
    assert not pm.has_plugin("fake") and not pm.has_plugin("other")
    assert pm.has_plugin("Prices")


def test_the_allow_list_narrows_autoload_and_warns_about_missing_names(
    fake_dist: FakeDist, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PLUGINS_ENV, " other , not-installed ")
    with caplog.at_level(logging.WARNING, logger="cmcsync.plugins"):
        pm = make_plugin_manager()
    assert pm.has_plugin("other")
    assert not pm.has_plugin("fake")
    assert fake_dist.modules["fake"] not in sys.modules  # not even imported
    [record] = caplog.records
    assert "not-installed" in record.getMessage() and PLUGINS_ENV in record.getMessage()


def test_an_entry_point_that_fails_to_import_names_itself_and_its_package(
    fake_dist: FakeDist, tmp_path: Path
) -> None:
    (tmp_path / f"{fake_dist.modules['other']}.py").write_text("raise ImportError('no numpy')\n")
    with pytest.raises(ConfigError) as info:
        make_plugin_manager()
    message = str(info.value)
    assert "'other'" in message and fake_dist.name in message and "no numpy" in message


def test_an_entry_point_plugin_with_a_bad_hook_names_its_package(
    fake_dist: FakeDist, tmp_path: Path
) -> None:
    source = "import cmcsync\n\n@cmcsync.hookimpl\ndef cmcsync_on_konnect(client):\n    pass\n"
    (tmp_path / f"{fake_dist.modules['fake']}.py").write_text(source)
    with pytest.raises(
        ConfigError, match=r"cmcsync_on_konnect.*cmcsync_on_connect.*" + fake_dist.name
    ):
        make_plugin_manager()


# --- validation at registration -------------------------------------------------------------


class Misspelt:
    @hookimpl
    def cmcsync_on_event(self, event: Any) -> None:
        pass

    @hookimpl
    def cmcsync_on_klines(self, event: Any) -> None:
        pass


def test_a_misspelt_hook_fails_at_once_naming_plugin_and_hook() -> None:
    pm = make_plugin_manager(autoload=False)
    with pytest.raises(ConfigError) as info:
        register(pm, Misspelt(), name="charts")
    message = str(info.value)
    assert "'charts'" in message
    assert "'cmcsync_on_klines'" in message and "did you mean 'cmcsync_on_kline'" in message
    # Nothing of the plugin is left behind, not even its valid hook.
    assert pm.get_plugins() == set()
    assert pm.hook.cmcsync_on_event.get_hookimpls() == []
    assert register(pm, Prices(), name="charts") == "charts"  # the name is free again


def test_an_unknown_argument_name_fails_naming_plugin_and_hook() -> None:
    class WrongArgs:
        @hookimpl
        def cmcsync_on_connect(self, client: Any, uri: str) -> None:
            pass

    pm = make_plugin_manager(autoload=False)
    with pytest.raises(ConfigError, match=r"'WrongArgs'.*'cmcsync_on_connect'.*uri"):
        register(pm, WrongArgs())
    assert pm.get_plugins() == set()


def test_an_unmarked_hook_function_is_refused() -> None:
    class Unmarked:
        def cmcsync_on_kline(self, event: Any) -> None:
            pass

    with pytest.raises(ConfigError, match=r"'Unmarked'.*cmcsync_on_kline.*@cmcsync.hookimpl"):
        make_plugin_manager(autoload=False, plugins=[Unmarked()])


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_hook_wrappers_are_refused_with_a_reason(option: str) -> None:
    class Wrapping:
        @(hookimpl(wrapper=True) if option == "wrapper" else hookimpl(hookwrapper=True))
        def cmcsync_on_event(self, event: Any) -> Iterator[None]:
            yield

    pm = make_plugin_manager(autoload=False)
    with pytest.raises(ConfigError, match="wrappers are not supported"):
        register(pm, Wrapping())
    assert pm.get_plugins() == set()


def test_a_subset_of_the_arguments_and_optional_hooks_are_accepted() -> None:
    class Partial:
        @hookimpl
        def cmcsync_on_disconnect(self, will_reconnect: bool) -> None:
            pass

        @hookimpl(optionalhook=True)
        def cmcsync_on_future_hook(self) -> None:
            pass

    pm = make_plugin_manager(autoload=False)
    assert register(pm, Partial()) == "Partial"


def test_duplicate_names_and_objects_are_refused() -> None:
    pm = make_plugin_manager(autoload=False)
    plugin = Prices()
    register(pm, plugin, name="prices")
    with pytest.raises(ConfigError, match="'prices' is already registered"):
        register(pm, Prices(), name="prices")
    with pytest.raises(ConfigError, match="already registered as 'prices'"):
        register(pm, plugin, name="again")


def test_instances_are_named_after_their_class_and_numbered() -> None:
    pm = make_plugin_manager(autoload=False)
    assert [register(pm, Prices()) for _ in range(3)] == ["Prices", "Prices-2", "Prices-3"]


def test_validation_also_guards_a_plain_pluggy_manager() -> None:
    pm = pluggy.PluginManager("cmcsync")
    from cmcsync import hookspecs

    pm.add_hookspecs(hookspecs)
    with pytest.raises(ConfigError, match="cmcsync_on_klines"):
        register(pm, Misspelt())
    assert pm.get_plugins() == set()
    assert register(pm, Prices()) == "Prices"


def test_every_registration_change_bumps_the_generation() -> None:
    pm = make_plugin_manager(autoload=False)
    assert isinstance(pm, PluginManager)
    start = pm.generation
    name = register(pm, Prices())
    assert pm.generation > start
    after_register = pm.generation
    with pytest.raises(ConfigError):
        register(pm, Misspelt())
    assert pm.get_plugins() == {pm.get_plugin(name)}
    pm.set_blocked(name)
    assert pm.generation > after_register
    assert plugin_info(pm) == []  # a blocked (switched-off) plugin is not listed
