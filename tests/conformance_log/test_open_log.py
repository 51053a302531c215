"""Conformance: `open_log` picks the backend by scheme; a log and a records store can share a namespace."""

from __future__ import annotations

import pytest

from microstate.server.store.log import LogCapabilities, LogStore, open_log
from tests.conformance.conftest import Backend, StoreFactory


@pytest.mark.parametrize("url", ["ftp://host/x", "postgres://localhost/db", "data/log.db", ""])
async def test_an_unknown_scheme_is_a_clear_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        await open_log(url, "ns")


async def test_the_log_implements_the_protocol(log: LogStore) -> None:
    assert isinstance(log, LogStore)
    assert isinstance(log.capabilities, LogCapabilities)
    await log.ping()
    await log.close()
    await log.close()  # idempotent


@pytest.mark.parametrize("namespace", ["", "has space", 'quote"', "{tag}", "-leading", "x" * 101])
async def test_a_bad_namespace_is_rejected(backend: Backend, namespace: str) -> None:
    with pytest.raises(ValueError):
        await open_log(backend.url, namespace)


@pytest.mark.parametrize("window", [0, -1.0])
async def test_a_dedupe_window_must_be_positive(backend: Backend, namespace: str, window: float) -> None:
    with pytest.raises(ValueError):
        await open_log(backend.url, namespace, dedupe_window=window)


async def test_a_log_and_a_records_store_on_one_url_and_namespace_are_independent(
    log: LogStore, store_factory: StoreFactory
) -> None:
    store = await store_factory()
    record = await store.put("k", b"record")
    store_head = await store.head_cursor()

    appended = await log.append([b"entry"])

    assert appended.positions == range(1, 2)
    assert await store.head_cursor() == store_head
    assert await store.get("k") == record
    assert (await store.list()).records == [record]
    assert [e.data for e in (await log.read()).entries] == [b"entry"]


async def test_logs_of_two_namespaces_are_independent(backend: Backend, namespace: str) -> None:
    one = await open_log(backend.url, f"{namespace}-one")
    two = await open_log(backend.url, f"{namespace}-two")
    try:
        await one.append([b"1"], dedupe_key="same key")
        second = await two.append([b"2"], dedupe_key="same key")

        assert not second.duplicate
        assert [e.data for e in (await two.read()).entries] == [b"2"]
    finally:
        await one.close()
        await two.close()
