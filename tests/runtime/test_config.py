"""Settings come from flags, then MICROSTATE_* env vars, then defaults; bad values name their source."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from microstate.server.config import ConfigError, ServerConfig, add_arguments, load, to_flags


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_apply_when_neither_flag_nor_env_is_set() -> None:
    assert load(parse(), environ={}) == ServerConfig()


def test_env_overrides_default_and_flag_overrides_env() -> None:
    env = {
        "MICROSTATE_PORT": "7000",
        "MICROSTATE_DRAIN_SECONDS": "2.5",
        "MICROSTATE_STORE": "redis://env:6379/0",
    }
    from_env = load(parse(), environ=env)
    assert (from_env.port, from_env.drain_seconds, from_env.store) == (7000, 2.5, "redis://env:6379/0")

    flagged = load(parse("--port", "7001", "--store", "sqlite:///flag.db"), environ=env)
    assert (flagged.port, flagged.drain_seconds, flagged.store) == (7001, 2.5, "sqlite:///flag.db")


def test_every_setting_has_an_env_var_and_a_flag() -> None:
    env = {
        "MICROSTATE_HOST": "0.0.0.0",
        "MICROSTATE_DATA_DIR": "/srv/state",
        "MICROSTATE_GRACE_SECONDS": "3",
        "MICROSTATE_MAX_MESSAGE_BYTES": "1024",
        "MICROSTATE_KEEPALIVE_PERMIT_WITHOUT_CALLS": "false",
        "MICROSTATE_MAX_CONNECTION_AGE_SECONDS": "300",
        "MICROSTATE_LOG_FORMAT": "JSON",
        "MICROSTATE_LOG_LEVEL": "debug",
        "MICROSTATE_EVENT_LOOP": "asyncio",
    }
    config = load(parse(), environ=env)
    assert config.host == "0.0.0.0"
    assert config.data_dir == Path("/srv/state")
    assert config.grace_seconds == 3.0
    assert config.max_message_bytes == 1024
    assert config.keepalive_permit_without_calls is False
    assert config.max_connection_age_seconds == 300.0
    assert (config.log_format, config.log_level) == ("json", "DEBUG")
    assert config.event_loop == "asyncio"

    flagged = load(parse("--keepalive-permit-without-calls", "--log-level", "error"), environ=env)
    assert flagged.keepalive_permit_without_calls is True
    assert flagged.log_level == "ERROR"


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [
        (["--port", "70000"], {}, "--port"),
        ([], {"MICROSTATE_PORT": "http"}, "MICROSTATE_PORT"),
        ([], {"MICROSTATE_DRAIN_SECONDS": "-1"}, "MICROSTATE_DRAIN_SECONDS"),
        (["--log-format", "yaml"], {}, "--log-format"),
        (
            [],
            {"MICROSTATE_KEEPALIVE_PERMIT_WITHOUT_CALLS": "maybe"},
            "MICROSTATE_KEEPALIVE_PERMIT_WITHOUT_CALLS",
        ),
    ],
)
def test_bad_values_name_where_they_came_from(argv: list[str], env: dict[str, str], source: str) -> None:
    with pytest.raises(ConfigError, match=source):
        load(parse(*argv), environ=env)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MICROSTATE_PORT", "abc", "a port in 0..65535"),
        ("MICROSTATE_MAX_MESSAGE_BYTES", "1MB", "a positive integer"),
        ("MICROSTATE_GRACE_SECONDS", "ten", "a non-negative number of seconds"),
        ("MICROSTATE_MAX_CONNECTION_AGE_SECONDS", "1h", "a non-negative number of seconds"),
        ("MICROSTATE_EVENT_LOOP", "fast", "one of auto, asyncio, uvloop"),
    ],
)
def test_unparsable_values_say_what_was_expected(variable: str, value: str, expected: str) -> None:
    """Not Python's "invalid literal for int() with base 10"."""
    with pytest.raises(ConfigError) as raised:
        load(parse(), environ={variable: value})
    assert str(raised.value) == f"{variable}: expected {expected}, got {value!r}"


def test_to_flags_reproduces_the_settings() -> None:
    config = ServerConfig(host="::", drain_seconds=0.0, keepalive_permit_without_calls=False, port=None)
    names = ("host", "drain_seconds", "keepalive_permit_without_calls", "port")
    assert load(parse(*to_flags(config, names)), environ={}) == config


def test_a_command_may_bring_its_own_defaults_below_env_and_flags() -> None:
    defaults = {"drain_seconds": 0.0}
    assert load(parse(), environ={}, defaults=defaults).drain_seconds == 0.0
    assert load(parse(), environ={"MICROSTATE_DRAIN_SECONDS": "3"}, defaults=defaults).drain_seconds == 3.0
    assert load(parse("--drain-seconds", "4"), environ={}, defaults=defaults).drain_seconds == 4.0
