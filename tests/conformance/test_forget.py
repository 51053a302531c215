"""`forget`: every backend forgets deleted keys' history (kit/subjects.py) without breaking a watch reading
across it (Redis: the forgotten revisions are remembered, so the hole is not taken for a trimmed log)."""

from __future__ import annotations

import pytest

from microstate.server.kit.subjects import Forgetting
from microstate.server.store import ChangeKind, Store
from microstate.server.store.base import Change


async def history(store: Store, count: int) -> list[tuple[ChangeKind, str]]:
    changes: list[Change] = []
    watch = store.watch(after="0")
    try:
        async for change in watch:
            changes.append(change)
            if len(changes) == count:
                break
    finally:
        await watch.aclose()
    return [(change.kind, change.key) for change in changes]


@pytest.mark.parametrize("keep_deletions", [True, False])
async def test_forget_removes_a_deleted_keys_history_but_its_deletion(
    store: Store, keep_deletions: bool
) -> None:
    assert isinstance(store, Forgetting)
    await store.put("gone", b"secret v1")
    await store.put("gone", b"secret v2")
    await store.put("kept", b"other")
    await store.delete("gone")
    following = store.watch(after="0")
    first = await anext(following)  # a watch that was reading when the history went
    await store.forget(["gone"], keep_deletions=keep_deletions)
    await store.put("later", b"x")
    expected = [(ChangeKind.CREATED, "kept")]
    expected += [(ChangeKind.DELETED, "gone")] if keep_deletions else []
    expected += [(ChangeKind.CREATED, "later")]
    assert await history(store, len(expected)) == expected
    rest = [first.key]
    async for change in following:  # continues without a CursorExpired
        rest.append(change.key)
        if change.key == "later":
            break
    await following.aclose()
    assert rest[-1] == "later" and (await store.get("kept")) is not None
