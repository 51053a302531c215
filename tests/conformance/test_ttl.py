"""Conformance: TTL is enforced on every read; an expired record is absent in every sense."""

from __future__ import annotations

import time

import pytest

from microstate.server.store import ABSENT, PreconditionFailed, Store
from tests.conformance.waiting import wait_until

SHORT_TTL = 0.5


async def _expired(store: Store, key: str) -> None:
    async def gone() -> bool:
        return await store.get(key) is None

    await wait_until(gone, what=f"{key!r} expires")


async def test_a_record_with_ttl_reads_back_with_its_expiry(store: Store) -> None:
    before = time.time()
    written = await store.put("k", b"v", ttl=30)

    assert written.expires_at is not None
    assert before + 29 <= written.expires_at <= time.time() + 31
    read = await store.get("k")
    assert read is not None
    assert read.expires_at == pytest.approx(written.expires_at, abs=0.01)


async def test_an_expired_record_is_absent_from_every_read(store: Store) -> None:
    await store.put("expiring", b"v", ttl=SHORT_TTL)
    lasting = await store.put("lasting", b"v")

    await _expired(store, "expiring")

    assert await store.batch_get(["expiring", "lasting"]) == {"lasting": lasting}
    assert [record.key for record in (await store.list()).records] == ["lasting"]


async def test_an_expired_record_counts_as_absent_for_preconditions(store: Store) -> None:
    old = await store.put("k", b"old", ttl=SHORT_TTL)
    await _expired(store, "k")

    with pytest.raises(PreconditionFailed) as failure:
        await store.put("k", b"stale", if_match=old.revision)
    assert failure.value.current is None
    assert await store.delete("k") is False

    created = await store.put("k", b"new", if_match=ABSENT)
    assert created.revision > old.revision
    assert created.expires_at is None
    assert await store.get("k") == created


async def test_a_put_without_ttl_clears_an_earlier_ttl(store: Store) -> None:
    first = await store.put("k", b"v", ttl=SHORT_TTL)
    kept = await store.put("k", b"v", if_match=first.revision)

    assert kept.expires_at is None
    # Outlive the first TTL: wait until a record written with the same TTL after it has expired.
    await store.put("witness", b"v", ttl=SHORT_TTL)
    await _expired(store, "witness")
    assert await store.get("k") == kept


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_a_non_positive_ttl_is_rejected(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.put("k", b"v", ttl=ttl)
    assert await store.get("k") is None
