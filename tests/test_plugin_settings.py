"""Plugin settings read with cmcsync.plugins.settings_from: host settings, then the environment."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import cmcsync.plugins
from cmcsync.exceptions import ConfigError
from cmcsync.plugins import settings_from


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{attribute.name} must be at least 1, not {value!r}", param=attribute.name
        )


def _known_layout(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("channel", "subscription"):
        raise ConfigError(f"layout must be 'channel' or 'subscription', not {value!r}")


@attrs.frozen(kw_only=True)
class DemoSettings:
    url: str = "sqlite:///default.db"
    batch_size: int = attrs.field(default=100, validator=_at_least_one)
    timeout: float = 3.0
    tags: Any = ()
    layout: str = attrs.field(default="channel", validator=_known_layout)


NAMES = {
    "CMCSYNC_DEMO_URL": "url",
    "CMCSYNC_DEMO_BATCH_SIZE": "batch_size",
    "CMCSYNC_DEMO_TIMEOUT": "timeout",
    "CMCSYNC_DEMO_TAGS": "tags",
    "CMCSYNC_DEMO_LAYOUT": "layout",
}
NUMBERS = {"batch_size": (int, "a whole number"), "timeout": (float, "a number of seconds")}


def read(settings: object, environ: dict[str, str] | None = None, **options: Any) -> DemoSettings:
    env = {} if environ is None else environ
    return settings_from(DemoSettings, NAMES, settings, environ=env, numbers=NUMBERS, **options)


def test_it_is_public() -> None:
    assert "settings_from" in cmcsync.plugins.__all__


def test_a_mapping_is_read_by_key_and_its_values_are_passed_as_they_are() -> None:
    flask_config: dict[str, Any] = {
        "CMCSYNC_DEMO_URL": "sqlite:///flask.db",
        "CMCSYNC_DEMO_BATCH_SIZE": 7,
        "CMCSYNC_DEMO_TAGS": ["a", "b"],
    }
    settings = read(flask_config)
    assert (settings.url, settings.batch_size, settings.tags) == (
        "sqlite:///flask.db",
        7,
        ["a", "b"],
    )
    assert settings.timeout == 3.0  # not set anywhere: the class's default


def test_an_object_is_read_by_attribute() -> None:
    class DjangoSettings:
        CMCSYNC_DEMO_URL = "sqlite:///django.db"
        CMCSYNC_DEMO_TIMEOUT = 0.5
        DEBUG = True

    settings = read(DjangoSettings())
    assert (settings.url, settings.timeout, settings.batch_size) == (
        "sqlite:///django.db",
        0.5,
        100,
    )


def test_a_name_is_also_found_without_the_cmcsync_prefix() -> None:
    django_cmcsync_dict = {
        "URL": "wss://cmc",
        "DEMO_URL": "sqlite:///dict.db",
        "DEMO_BATCH_SIZE": 4,
    }
    settings = read(django_cmcsync_dict)
    assert (settings.url, settings.batch_size) == ("sqlite:///dict.db", 4)

    class Short:
        DEMO_TIMEOUT = "1.5"

    assert read(Short()).timeout == 1.5
    both = {"CMCSYNC_DEMO_URL": "sqlite:///full.db", "DEMO_URL": "sqlite:///short.db"}
    assert read(both).url == "sqlite:///full.db"


def test_the_environment_fills_in_what_the_settings_lack() -> None:
    host = {"CMCSYNC_DEMO_URL": "sqlite:///host.db", "CMCSYNC_DEMO_TIMEOUT": None}
    environ = {
        "CMCSYNC_DEMO_URL": "sqlite:///env.db",
        "CMCSYNC_DEMO_BATCH_SIZE": "9",
        "CMCSYNC_DEMO_TIMEOUT": "2.5",
        "DEMO_LAYOUT": "subscription",  # only the full name is read from the environment
    }
    settings = read(host, environ)
    assert (settings.url, settings.batch_size) == ("sqlite:///host.db", 9)
    assert settings.timeout == 2.5  # None in the settings counts as not set
    assert settings.layout == "channel"
    assert read({}, {"CMCSYNC_DEMO_URL": ""}).url == "sqlite:///default.db"  # empty is not set


def test_os_environ_is_read_by_default_and_an_empty_environ_reads_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMCSYNC_DEMO_URL", "sqlite:///os.db")
    monkeypatch.setenv("CMCSYNC_DEMO_BATCH_SIZE", "12")
    settings = settings_from(DemoSettings, NAMES, {}, numbers=NUMBERS)
    assert (settings.url, settings.batch_size) == ("sqlite:///os.db", 12)
    nothing = settings_from(DemoSettings, NAMES, {}, environ={}, numbers=NUMBERS)
    assert nothing == DemoSettings()


def test_strings_for_numbers_are_parsed_and_other_strings_are_not() -> None:
    environ = {
        "CMCSYNC_DEMO_BATCH_SIZE": "25",
        "CMCSYNC_DEMO_TIMEOUT": "0.25",
        "CMCSYNC_DEMO_TAGS": "10",
    }
    settings = read({}, environ)
    assert (settings.batch_size, settings.timeout, settings.tags) == (25, 0.25, "10")
    assert type(settings.timeout) is float
    unparsed = settings_from(DemoSettings, NAMES, {}, environ={"CMCSYNC_DEMO_TIMEOUT": "0.25"})
    assert unparsed.timeout == "0.25"  # no numbers given: passed on as found


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CMCSYNC_DEMO_BATCH_SIZE", "lots", "must be a whole number, not 'lots'"),
        ("CMCSYNC_DEMO_BATCH_SIZE", "2.5", "must be a whole number, not '2.5'"),
        ("CMCSYNC_DEMO_TIMEOUT", "soon", "must be a number of seconds, not 'soon'"),
    ],
)
def test_a_number_that_cannot_be_parsed_names_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as from_env:
        read({}, {name: value})
    assert (str(from_env.value), from_env.value.param) == (f"{name} {says}", name)
    with pytest.raises(ConfigError) as from_host:
        read({name.removeprefix("CMCSYNC_"): value})  # the short name still gives the full one
    assert (str(from_host.value), from_host.value.param) == (f"{name} {says}", name)


def test_a_value_the_class_refuses_is_reraised_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        read({"DEMO_BATCH_SIZE": 0})
    assert str(raised.value) == "CMCSYNC_DEMO_BATCH_SIZE: batch_size must be at least 1, not 0"
    assert raised.value.param == "CMCSYNC_DEMO_BATCH_SIZE"
    assert isinstance(raised.value.__cause__, ConfigError)
    assert raised.value.__cause__.param == "batch_size"
    with pytest.raises(ConfigError, match=r"^CMCSYNC_DEMO_BATCH_SIZE: .*not -3$"):
        read({}, {"CMCSYNC_DEMO_BATCH_SIZE": "-3"})


def test_an_error_naming_no_setting_is_raised_as_it_is() -> None:
    with pytest.raises(ConfigError) as raised:
        read({}, {"CMCSYNC_DEMO_LAYOUT": "pool"})
    assert str(raised.value) == "layout must be 'channel' or 'subscription', not 'pool'"
    assert raised.value.param is None


def test_strip_removes_the_whitespace_around_string_values() -> None:
    environ = {"CMCSYNC_DEMO_LAYOUT": " subscription\n", "CMCSYNC_DEMO_BATCH_SIZE": " 8 "}
    stripped = read({"CMCSYNC_DEMO_TAGS": "  a,b "}, environ, strip=True)
    assert (stripped.layout, stripped.batch_size, stripped.tags) == ("subscription", 8, "a,b")
    with pytest.raises(ConfigError, match="not ' subscription\\\\n'"):
        read({}, environ)  # without strip, the value reaches the class as it was set
