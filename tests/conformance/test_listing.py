"""Conformance: list by prefix, in key order, with keyset paging that stays stable under concurrent writes."""

from __future__ import annotations

import pytest

from microstate.server.store import Store
from tests.conformance.conftest import StoreFactory

# Keys that trip naive implementations: LIKE wildcards, glob characters, a prefix of another key,
# multi-byte UTF-8, astral-plane characters, and U+10FFFF (the largest code point) ending a prefix.
TRICKY_KEYS = [
    "a", "a/1", "a/2", "ab", "a%b", "a_b", "aXb", "a*", "a?", "a[1]", "b", "b/a", "%", "%x", "_x",
    "ü", "ü/1", "üx", "日本/1", "日本/2", "\U0001f600/1", "z\U0010ffff", "z\U0010ffff/1", "{",
]  # fmt: skip
PREFIXES = [
    "",
    "a",
    "a/",
    "a%",
    "a_",
    "a*",
    "a[",
    "%",
    "_",
    "b",
    "ü",
    "日本/",
    "\U0001f600",
    "z\U0010ffff",
    "q",
]


async def _list_all(store: Store, prefix: str, *, limit: int = 100) -> list[str]:
    keys: list[str] = []
    after: str | None = None
    while True:
        page = await store.list(prefix, after=after, limit=limit)
        keys.extend(record.key for record in page.records)
        if page.next_after is None:
            return keys
        after = page.next_after


async def test_list_returns_records_in_key_order_with_values(store: Store) -> None:
    written = [await store.put(key, key.encode()) for key in ["c", "a", "b"]]

    page = await store.list()

    assert page.records == sorted(written, key=lambda record: record.key)
    assert page.next_after is None


async def test_prefix_matches_exactly_the_keys_that_start_with_it(store: Store) -> None:
    for key in TRICKY_KEYS:
        await store.put(key, b"v")

    for prefix in PREFIXES:
        listed = await _list_all(store, prefix, limit=3)
        assert listed == sorted(key for key in TRICKY_KEYS if key.startswith(prefix)), f"prefix {prefix!r}"


async def test_after_is_exclusive_and_need_not_be_a_stored_key(store: Store) -> None:
    for key in ["k1", "k2", "k3", "k4"]:
        await store.put(key, b"v")

    assert [r.key for r in (await store.list("k", after="k2")).records] == ["k3", "k4"]
    assert [r.key for r in (await store.list("k", after="k25")).records] == ["k3", "k4"]
    assert [r.key for r in (await store.list("k", after="k4")).records] == []


async def test_pages_respect_the_limit_and_the_last_page_says_so(store: Store) -> None:
    for i in range(7):
        await store.put(f"k{i}", b"v")

    first = await store.list("k", limit=3)
    second = await store.list("k", after=first.next_after, limit=3)
    third = await store.list("k", after=second.next_after, limit=3)

    assert [len(page.records) for page in (first, second, third)] == [3, 3, 1]
    assert first.next_after == "k2"
    assert third.next_after is None
    exact = await store.list("k", limit=7)
    assert len(exact.records) == 7
    assert exact.next_after is None


async def test_paging_is_stable_while_other_keys_are_inserted_and_deleted(
    store: Store, store_factory: StoreFactory
) -> None:
    """Keyset paging: churn around the cursor between pages never skips or repeats a key that stayed put.

    Offset paging fails this test: an insert before the cursor repeats a key, a delete before it skips one.
    """
    writer = await store_factory()
    stable = [f"p/{i:03d}" for i in range(0, 120, 4)]
    for key in stable:
        await store.put(key, b"stable")
    churned: list[str] = []

    listed: list[str] = []
    after: str | None = None
    while True:
        page = await store.list("p/", after=after, limit=4)
        listed.extend(record.key for record in page.records)
        if page.next_after is None:
            break
        after = page.next_after
        # Insert keys just before and after the cursor and at both ends, and delete earlier churn.
        cursor_number = int(after[2:])
        for number in (cursor_number - 1, cursor_number + 1, 1, 119):
            key = f"p/{number:03d}"
            if key not in stable and key not in churned:
                await writer.put(key, b"churn")
                churned.append(key)
        if len(churned) > 4:
            await writer.delete(churned.pop(0))
            await writer.delete(churned.pop(0))

    assert listed == sorted(set(listed)), "pages out of key order, or a key repeated"
    assert set(stable) <= set(listed), f"skipped: {sorted(set(stable) - set(listed))}"
    assert all(key.startswith("p/") for key in listed)


async def test_list_rejects_a_non_positive_limit(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.list(limit=0)
