"""Conformance: reading and writing records, preconditions (CAS) and revisions."""

from __future__ import annotations

import pytest

from microstate.server.store import ABSENT, Capabilities, PreconditionFailed, Store
from tests.conformance.conftest import StoreFactory


async def test_put_then_get_returns_the_written_record(store: Store) -> None:
    written = await store.put("user/1", b"alice")

    assert written.key == "user/1"
    assert written.value == b"alice"
    assert written.expires_at is None
    assert await store.get("user/1") == written


async def test_values_are_opaque_bytes(store: Store) -> None:
    every_byte = bytes(range(256))
    await store.put("binary", every_byte)
    await store.put("empty", b"")

    assert (await store.get("binary")).value == every_byte  # type: ignore[union-attr]
    assert (await store.get("empty")).value == b""  # type: ignore[union-attr]


async def test_get_of_a_missing_key_is_none(store: Store) -> None:
    assert await store.get("never-written") is None


async def test_unconditional_put_overwrites(store: Store) -> None:
    first = await store.put("k", b"1")
    second = await store.put("k", b"2")

    assert second.revision > first.revision
    assert await store.get("k") == second


async def test_delete_removes_the_record(store: Store) -> None:
    await store.put("k", b"v")

    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False


async def test_create_with_absent_succeeds_once(store: Store) -> None:
    created = await store.put("k", b"first", if_match=ABSENT)

    with pytest.raises(PreconditionFailed) as failure:
        await store.put("k", b"second", if_match=ABSENT)

    assert failure.value.key == "k"
    assert failure.value.current == created
    assert await store.get("k") == created


async def test_put_if_match_current_revision_succeeds(store: Store) -> None:
    first = await store.put("k", b"1")

    second = await store.put("k", b"2", if_match=first.revision)

    assert second.value == b"2"
    assert second.revision > first.revision


async def test_put_if_match_stale_revision_fails_and_changes_nothing(store: Store) -> None:
    first = await store.put("k", b"1")
    second = await store.put("k", b"2")

    with pytest.raises(PreconditionFailed) as failure:
        await store.put("k", b"lost update", if_match=first.revision)

    assert failure.value.current == second
    assert await store.get("k") == second


async def test_put_if_match_a_revision_on_a_missing_key_fails(store: Store) -> None:
    with pytest.raises(PreconditionFailed) as failure:
        await store.put("k", b"v", if_match=1)

    assert failure.value.current is None
    assert await store.get("k") is None


async def test_delete_if_match(store: Store) -> None:
    first = await store.put("k", b"1")
    second = await store.put("k", b"2")

    with pytest.raises(PreconditionFailed) as failure:
        await store.delete("k", if_match=first.revision)
    assert failure.value.current == second
    assert await store.get("k") == second

    assert await store.delete("k", if_match=second.revision) is True
    assert await store.get("k") is None


async def test_delete_of_a_missing_key_with_preconditions(store: Store) -> None:
    assert await store.delete("k", if_match=ABSENT) is False
    with pytest.raises(PreconditionFailed) as failure:
        await store.delete("k", if_match=1)
    assert failure.value.current is None

    await store.put("k", b"v")
    with pytest.raises(PreconditionFailed):
        await store.delete("k", if_match=ABSENT)
    assert await store.get("k") is not None


async def test_revisions_strictly_increase_across_keys_deletes_and_connections(
    store: Store, store_factory: StoreFactory
) -> None:
    other = await store_factory()
    revisions = [
        (await store.put("a", b"1")).revision,
        (await other.put("b", b"1")).revision,
        (await store.put("a", b"2")).revision,
    ]
    await other.delete("a")
    revisions.append((await store.put("a", b"3")).revision)
    revisions.append((await other.put("b", b"2")).revision)

    assert revisions == sorted(set(revisions)), revisions


async def test_batch_get_omits_missing_keys_and_tolerates_duplicates(store: Store) -> None:
    a = await store.put("a", b"1")
    b = await store.put("b", b"2")

    found = await store.batch_get(["a", "missing", "a", "b", "b"])

    assert found == {"a": a, "b": b}
    assert await store.batch_get([]) == {}


async def test_batch_get_of_a_thousand_keys(store: Store) -> None:
    written = {f"id/{i:04d}": await store.put(f"id/{i:04d}", b"x") for i in range(0, 1000, 97)}

    found = await store.batch_get([f"id/{i:04d}" for i in range(1000)])

    assert found == written


async def test_a_second_connection_sees_the_first_ones_writes(
    store: Store, store_factory: StoreFactory
) -> None:
    other = await store_factory()
    written = await store.put("shared", b"v")

    assert await other.get("shared") == written
    assert await other.delete("shared", if_match=written.revision) is True
    assert await store.get("shared") is None


async def test_capabilities_are_declared(store: Store) -> None:
    assert isinstance(store.capabilities, Capabilities)
    assert isinstance(store, Store)


async def test_ping_answers(store: Store) -> None:
    await store.ping()


@pytest.mark.parametrize("if_match", [True, "1", 1.0])
async def test_an_if_match_that_is_not_a_revision_is_refused_and_writes_nothing(
    store: Store, if_match: object
) -> None:
    """A bool or a string is not a revision: no backend may read `True` or "1" as revision 1."""
    written = await store.put("k", b"v")

    with pytest.raises(TypeError, match="if_match must be"):
        await store.put("k", b"w", if_match=if_match)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="if_match must be"):
        await store.delete("k", if_match=if_match)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="if_match must be"):
        await store.put("absent", b"w", if_match=if_match)  # type: ignore[arg-type]
    assert await store.get("k") == written
    assert await store.get("absent") is None
