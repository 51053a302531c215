"""The store-URL settings parser (store/_url_settings.py) beyond what the conformance suite shows: the
spellings each type takes, and driver parameters passed on exactly as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from microstate.server.store._url_settings import declared_settings, split_url
from microstate.server.store.mongo import MongoStore
from microstate.server.store.redis import RedisStore
from microstate.server.store.sqlite import SqliteStore
from tests.support.server_process import free_port


def test_each_backend_declares_its_keyword_settings_with_their_types() -> None:
    settings = declared_settings(RedisStore.open)
    assert sorted(settings) == [
        "connect_timeout",
        "durable",
        "health_check_interval",
        "retention",
        "socket_timeout",
        "watch_block",
        "watch_outage_budget",
    ]
    assert settings["retention"].parse("5") == 5
    assert settings["watch_block"].parse("0.25") == 0.25
    assert settings["durable"].parse("on") is True


@pytest.mark.parametrize(
    ("query", "durable", "retention"),
    [
        ("durable=true&retention=100", True, 100),
        ("durable=TRUE&retention=0100", True, 100),
        ("durable=yes&retention=7", True, 7),
        ("durable=on&retention=7", True, 7),
        ("durable=1&retention=7", True, 7),
        ("durable=false&retention=7", False, 7),
        ("durable=No&retention=7", False, 7),
        ("durable=off&retention=7", False, 7),
        ("durable=0&retention=7", False, 7),
    ],
)
async def test_switches_and_counts_take_the_usual_spellings(
    query: str, durable: bool, retention: int
) -> None:
    store = await RedisStore.open(f"redis://127.0.0.1:{free_port()}/0?{query}", "ns")  # does not connect
    try:
        assert (store.capabilities.durable, store.retention) == (durable, retention)
    finally:
        await store.close()


def test_driver_parameters_are_passed_on_exactly_as_written() -> None:
    """PyMongo does not unquote authMechanismProperties: re-encoding the query would change it."""
    url = (
        "mongodb://user:p%40ss@h1:27017,h2:27017/app?authMechanismProperties=TOKEN_RESOURCE:api%3A%2F%2Fx"
        "&retention=5&replicaSet=rs0&poll_interval=1.5#fragment"
    )
    driver_url, settings = split_url(url, declared_settings(MongoStore.open), "PyMongo", lambda _u, _k: True)

    assert driver_url == (
        "mongodb://user:p%40ss@h1:27017,h2:27017/app?authMechanismProperties=TOKEN_RESOURCE:api%3A%2F%2Fx"
        "&replicaSet=rs0#fragment"
    )
    assert settings == {"retention": 5, "poll_interval": 1.5}


async def test_a_plain_path_is_not_read_as_a_url(tmp_path: Path) -> None:
    odd = tmp_path / "a?retention=x.db"
    store = await SqliteStore.open(str(odd), "ns")  # a file name, '?' and all
    try:
        await store.put("k", b"v")
    finally:
        await store.close()
    assert odd.is_file()
