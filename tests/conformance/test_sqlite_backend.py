"""SQLite-only behaviour beyond the shared suite: URLs, key ranges, wake-ups, purge, exact retention."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microstate.server.store import (
    CursorExpired,
    InvalidCursor,
    StoreMisconfigured,
    StoreUnavailable,
    open_store,
)
from microstate.server.store.sqlite import DEFAULT_BUSY_TIMEOUT, SqliteStore, database_path, prefix_end
from tests.conformance.waiting import first_change, take, wait_until, watching

NEVER = 3600.0
"""An interval long enough that the behaviour under test cannot be coming from the periodic task."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


class OpenSqlite(Protocol):
    async def __call__(self, namespace: str = "ns", **options: Any) -> SqliteStore: ...


@pytest.fixture
async def open_sqlite(db: Path) -> AsyncIterator[OpenSqlite]:
    """Open SqliteStores on `db`; all are closed at teardown."""
    opened: list[SqliteStore] = []

    async def open_one(namespace: str = "ns", **options: Any) -> SqliteStore:
        opened.append(await SqliteStore.open(db, namespace, **options))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/x.db", "data/x.db"),
        ("sqlite:////var/lib/x.db", "/var/lib/x.db"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("plain/path.db", "plain/path.db"),
    ],
)
def test_database_path(url: str, path: str) -> None:
    assert database_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:x.db", "sqlite:///x.db?mode=ro"])
def test_database_path_rejects_urls_it_would_misread(url: str) -> None:
    with pytest.raises(ValueError):
        database_path(url)


@pytest.mark.parametrize("url", ["sqlite:///", ""])
async def test_a_url_without_a_file_is_refused_not_served_from_a_temporary_database(url: str) -> None:
    """SQLite opens a private temporary database for an empty name: everything written is gone at restart."""
    with pytest.raises(ValueError, match=r"names no file|needs a file"):
        await SqliteStore.open(url, "ns")


async def test_a_missing_directory_is_misconfigured_and_named(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "store.db"
    missing = f"cannot open SQLite store {path}: directory {path.parent} does not exist"
    with pytest.raises(StoreMisconfigured, match=re.escape(missing)):
        await SqliteStore.open(path, "ns")


async def test_a_file_sqlite_cannot_open_is_misconfigured_and_named(tmp_path: Path) -> None:
    with pytest.raises(StoreMisconfigured, match=f"cannot open SQLite store {tmp_path}: unable to open"):
        await SqliteStore.open(tmp_path, "ns")  # a directory


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=4)


@given(prefix=_TEXT, key=_TEXT, suffix=_TEXT)
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: str, key: str, suffix: str) -> None:
    end = prefix_end(prefix)
    for candidate in (key, prefix + suffix):
        in_range = candidate >= prefix and (end is None or candidate < end)
        assert in_range == candidate.startswith(prefix)


def test_prefix_end_carries_past_the_largest_code_point_and_skips_surrogates() -> None:
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("") is None
    assert prefix_end("\ud7ff") == "\ue000"


async def test_a_file_that_is_not_a_database_is_unavailable(db: Path) -> None:
    await asyncio.to_thread(db.write_bytes, os.urandom(8192))

    with pytest.raises(StoreUnavailable, match=f"cannot open SQLite store {db}: .*not a database"):
        await SqliteStore.open(db, "ns")


@pytest.mark.parametrize("namespace", ["", "has space", 'quote"', "x" * 101])
async def test_a_bad_namespace_is_rejected(db: Path, namespace: str) -> None:
    with pytest.raises(ValueError):
        await SqliteStore.open(db, namespace)


async def test_busy_timeout_from_the_url_bounds_the_wait_for_another_writers_lock(db: Path) -> None:
    store = await open_store(f"sqlite:///{db}?busy_timeout=0.1", "ns")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held until the end
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.put("k", b"v")
        assert time.monotonic() - started < DEFAULT_BUSY_TIMEOUT / 2, "waited as long as without the setting"
    finally:
        holder.close()
        await store.close()


async def test_the_url_may_carry_only_the_stores_settings(db: Path) -> None:
    """SQLite has no query parameters of its own (the driver is given a path, not a URL)."""
    with pytest.raises(
        ValueError, match=r"'mode' .* its settings: busy_timeout, poll_interval, purge_interval,"
    ):
        await open_store(f"sqlite:///{db}?mode=ro", "ns")


async def test_stores_opened_at_once_on_a_new_file_both_work(open_sqlite: OpenSqlite) -> None:
    first, second = await asyncio.gather(open_sqlite(), open_sqlite())

    written = await first.put("k", b"v")
    assert await second.get("k") == written


async def test_namespaces_in_one_file_are_isolated(open_sqlite: OpenSqlite) -> None:
    one, two = await open_sqlite("one"), await open_sqlite("two")

    await one.put("k", b"one")

    assert await two.get("k") is None
    assert (await two.list()).records == []
    assert await two.head_cursor() == "0"


async def test_a_local_write_wakes_a_watch_without_waiting_for_the_poll(open_sqlite: OpenSqlite) -> None:
    store = await open_sqlite(poll_interval=NEVER)

    async with watching(store, after=await store.head_cursor()) as changes:
        await store.put("k", b"1")
        await take(changes, 1)  # the watch has read the log once and now waits
        written = await store.put("k", b"2")
        (change,) = await take(changes, 1)

    assert change.record == written


async def test_retention_keeps_exactly_the_newest_changes(open_sqlite: OpenSqlite) -> None:
    store = await open_sqlite(retention=3)
    for i in range(10):
        await store.put(f"k{i}", b"v")

    async with watching(store, after="7") as changes:
        assert [c.key for c in await take(changes, 3)] == ["k7", "k8", "k9"]
    with pytest.raises(CursorExpired):
        await first_change(store, after="6")


async def test_a_cursor_ahead_of_the_log_is_invalid(open_sqlite: OpenSqlite) -> None:
    store = await open_sqlite()
    await store.put("k", b"v")

    with pytest.raises(InvalidCursor):
        await first_change(store, after="2")


async def test_expired_records_are_purged_from_the_file(open_sqlite: OpenSqlite, db: Path) -> None:
    store = await open_sqlite(purge_interval=0.05)
    await store.put("expiring", b"v", ttl=0.1)
    await store.put("lasting", b"v")

    async def only_lasting_stored() -> bool:
        with sqlite3.connect(db) as raw:
            return raw.execute('SELECT key FROM "records_ns"').fetchall() == [("lasting",)]

    await wait_until(only_lasting_stored, what="the expired record is purged")


async def test_cancelled_writes_leave_the_connection_usable(open_sqlite: OpenSqlite) -> None:
    store = await open_sqlite()
    writes = [asyncio.ensure_future(store.put(f"k{i}", b"v")) for i in range(20)]
    await asyncio.sleep(0)  # let them start, then cancel them mid-transaction
    for write in writes:
        write.cancel()
    await asyncio.gather(*writes, return_exceptions=True)

    written = await store.put("after", b"v")
    assert await store.get("after") == written


async def test_a_closed_store_is_unavailable(open_sqlite: OpenSqlite) -> None:
    store = await open_sqlite()
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(StoreUnavailable):
        await store.get("k")
