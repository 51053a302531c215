"""Conformance: opening a store. Settings come from the URL's query under one rule on every backend, bad ones
are refused naming them, and every backend takes the same namespaces.

That a setting from the URL takes effect is shown where its effect is: retention in test_watch.py, the
backend-specific ones (busy_timeout, socket_timeout, change_streams, ...) in each backend's own tests."""

from __future__ import annotations

import pytest

from microstate.server.store import open_store
from tests.conformance.conftest import Backend, StoreFactory, with_query
from tests.conformance.waiting import first_change

A_SECONDS_SETTING = {"sqlite": "busy_timeout", "redis": "socket_timeout", "mongo": "poll_interval"}
AN_INTERVAL = {"sqlite": "purge_interval", "redis": "socket_timeout", "mongo": "poll_interval"}


def seconds_setting(backend: Backend) -> str:
    return A_SECONDS_SETTING[backend.name.split("-")[0]]  # mongo-external is mongo


async def test_an_unknown_query_key_is_refused_naming_it_and_the_stores_settings(
    backend: Backend, namespace: str
) -> None:
    with pytest.raises(ValueError, match=r"'retension' in the store URL is not a setting") as refused:
        await open_store(with_query(backend.url, "retension=10"), namespace)

    assert "retention" in str(refused.value).partition("its settings:")[2]


@pytest.mark.parametrize("value", ["ten", "-1", "1.5", "1e3", "", "0x10"])
async def test_a_count_that_is_not_a_whole_number_is_refused(
    backend: Backend, namespace: str, value: str
) -> None:
    with pytest.raises(ValueError, match=rf"retention={value!r} is not a whole number"):
        await open_store(with_query(backend.url, f"retention={value}"), namespace)


@pytest.mark.parametrize("value", ["soon", "-0.5", "inf", "nan", "1s", ""])
async def test_seconds_that_are_not_a_number_are_refused(
    backend: Backend, namespace: str, value: str
) -> None:
    setting = seconds_setting(backend)
    with pytest.raises(ValueError, match=rf"{setting}={value!r} is not a number of seconds"):
        await open_store(with_query(backend.url, f"{setting}={value}"), namespace)


async def test_a_setting_given_twice_is_refused(backend: Backend, namespace: str) -> None:
    with pytest.raises(ValueError, match="retention is given twice"):
        await open_store(with_query(backend.url, "retention=10&retention=20"), namespace)


@pytest.mark.parametrize("setting", ["retention", "interval"])
async def test_a_count_or_an_interval_of_zero_is_refused(
    backend: Backend, namespace: str, setting: str
) -> None:
    """Zero would keep nothing, or poll in a busy loop (or fail every call, for Redis's socket_timeout)."""
    name = "retention" if setting == "retention" else AN_INTERVAL[backend.name.split("-")[0]]
    with pytest.raises(ValueError, match=f"{name} must be more than 0"):
        await open_store(with_query(backend.url, f"{name}=0"), namespace)


@pytest.mark.filterwarnings("error::UserWarning")  # PyMongo warns about a URI option it does not know
async def test_settings_in_the_url_are_taken_out_before_the_driver_sees_them(
    store_factory: StoreFactory,
) -> None:
    """A driver given `retention` would refuse it (SQLite's path, redis-py's connections at their first
    command) or warn about it (PyMongo, an error here): every connection of the store works."""
    store = await store_factory("retention=500")
    start = await store.head_cursor()
    written = await store.put("k", b"v")

    assert await store.get("k") == written
    assert (await first_change(store, after=start)).record == written


@pytest.mark.parametrize(
    "name", ["", "a b", "a:b", "a{b}", "a$b", "_lead", "-lead", ".lead", "é", "a/b", "x" * 101]
)
async def test_a_namespace_outside_the_shared_rule_is_refused(backend: Backend, name: str) -> None:
    with pytest.raises(ValueError, match="bad namespace"):
        await open_store(backend.url, name)


@pytest.mark.parametrize("name", ["a", "Profile.v2-test_9", "x" * 100])
async def test_a_namespace_inside_the_shared_rule_opens(backend: Backend, name: str) -> None:
    store = await open_store(backend.url, name)
    try:
        written = await store.put("k", b"v")
        assert await store.get("k") == written
    finally:
        await store.close()
