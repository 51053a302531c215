"""The keyed-resource kit's writes that slices beyond profile need: a change that writes nothing, an
expiry per write, upserts under contention, and a watch over several kinds with its cursor errors mapped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microstate.server.errors import FailedPrecondition, InvalidArgument
from microstate.server.kit.paging import PageTokens
from microstate.server.kit.resources import UNCHANGED, Kind, Resources, Stored, changes
from microstate.server.store import Store, open_store

TEXT: Kind[str] = Kind("note", "note_id", str.encode, bytes.decode)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'kit.db'}", "kit")
    yield opened
    await opened.close()


@pytest.fixture
def notes(store: Store) -> Resources[str]:
    return Resources(store, TEXT, PageTokens("ListNotes", "prefix"))


async def test_a_change_returning_unchanged_writes_nothing(notes: Resources[str], store: Store) -> None:
    created = await notes.create("a", "one")
    head = await store.head_cursor()

    kept = await notes.update("a", lambda current: UNCHANGED, etag="")

    assert kept == created
    assert await store.head_cursor() == head


async def test_update_and_upsert_give_the_written_value_its_expiry(
    notes: Resources[str], store: Store
) -> None:
    await notes.create("a", "one")

    await notes.update("a", lambda current: current.data + "!", etag="", ttl=lambda value: 60.0)
    await notes.upsert("b", lambda current: "new", ttl=lambda value: 30.0)

    records = await store.batch_get(["a", "b"])
    assert {key: record.value for key, record in records.items()} == {"a": b"one!", "b": b"new"}
    now = time.time()
    for key, ttl in (("a", 60.0), ("b", 30.0)):
        expires_at = records[key].expires_at
        assert expires_at is not None and now < expires_at <= now + ttl


async def test_an_update_without_ttl_keeps_no_expiry(notes: Resources[str], store: Store) -> None:
    await notes.create("a", "one", ttl=60.0)

    await notes.update("a", lambda current: "two", etag="")

    record = await store.get("a")
    assert record is not None and record.expires_at is None


async def test_upsert_creates_then_changes_and_concurrent_upserts_all_land(notes: Resources[str]) -> None:
    seen: list[str | None] = []

    def append(current: Stored[str] | None) -> str:
        seen.append(None if current is None else current.data)
        return (current.data if current is not None else "") + "x"

    first = await notes.upsert("n", append)
    assert first is not None and first.data == "x" and seen == [None]

    other = Resources(notes.store, TEXT, PageTokens("ListNotes", "prefix"))  # another writer: its own locks
    await asyncio.gather(*(resources.upsert("n", append) for resources in [notes, other] * 5))

    final = await notes.get("n")
    assert final.data == "x" * 11  # every upsert applied once, none lost to a concurrent one


async def test_upsert_returning_unchanged_on_a_missing_resource_writes_nothing(
    notes: Resources[str], store: Store
) -> None:
    assert await notes.upsert("gone", lambda current: UNCHANGED) is None
    assert await store.get("gone") is None


async def test_changes_streams_every_kind_after_the_cursor_and_refuses_a_bad_one(store: Store) -> None:
    start = await store.head_cursor()
    await store.put("a", b"1")
    await store.put("m/b", b"2")
    watched = changes(store, "", start)
    assert [(await anext(watched)).key for _ in range(2)] == ["a", "m/b"]
    await watched.aclose()

    with pytest.raises(InvalidArgument):
        await anext(changes(store, "", "not-a-cursor"))


async def test_changes_reports_a_cursor_older_than_the_log_as_resume_token_expired(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'short.db'}", "kit", retention=2)
    try:
        for index in range(5):
            await store.put(f"k{index}", b"v")
        with pytest.raises(FailedPrecondition) as expired:
            await anext(changes(store, "", "1"))
        assert expired.value.reason == "RESUME_TOKEN_EXPIRED"
    finally:
        await store.close()
