"""The tamper suite, on every records backend: an insider with write access to the store edits, inserts,
deletes, reorders, truncates or deletes the ledger, or rewrites it re-chained with the HMAC key; with one
checkpoint kept outside the store (the checkpoint file) and the public key, verification detects 100% of
them, each in the verdict it belongs to. The untouched ledger verifies."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from microstate.server.audit import audit_call, merkle
from microstate.server.audit.checkpoints import newest_in_file
from microstate.server.audit.entries import Entry, encode_fields
from microstate.server.audit.ledger import (
    CHECKPOINTS,
    ENTRIES,
    HEAD,
    ZERO_MAC,
    Sealed,
    batch_key,
    decode_batch,
    export_lines,
    leaf_of,
)
from microstate.server.audit.verify import Report, verify
from microstate.server.store.base import ABSENT, Store
from microstate.server.store.redis import MICROS
from microstate.server.store.redis_cluster import SUFFIX, partition_of
from microstate.server.store.sqlite import database_path
from tests.audit.conftest import Ledger, write_some
from tests.conformance.conftest import Backend
from tests.support.processes import until

ENTRY_COUNT = 30


async def keys_of(store: Store, prefix: str) -> list[str]:
    page = await store.list(prefix, limit=1000)
    return [record.key for record in page.records]


async def read_ledger(store: Store) -> list[Sealed]:
    sealed: list[Sealed] = []
    for key in await keys_of(store, ENTRIES):
        record = await store.get(key)
        assert record is not None
        sealed.extend(decode_batch(record.value))
    return sealed


async def rewrite(store: Store, sealed: list[Sealed], batch: int = 8) -> None:
    """Replace the ledger's entries by `sealed`, in batches as a sealer writes them (the insider's power)."""
    for key in await keys_of(store, ENTRIES):
        await store.delete(key)
    for first in range(0, len(sealed), batch):
        chunk = sealed[first : first + batch]
        await store.put(batch_key(first), encode_fields([each.encode() for each in chunk]))


def edited(entry: bytes) -> bytes:
    fields = Entry.decode(entry)
    return Entry(
        **{**{name: getattr(fields, name) for name in fields.__slots__}, "principal": "someone-else"}
    ).encode()


def rechained(log_id: str, sealed: list[Sealed], key: bytes, key_id: str) -> list[Sealed]:
    """`sealed` renumbered and re-chained with the HMAC key: what an insider holding the key can do."""
    out, mac = [], ZERO_MAC
    for index, each in enumerate(sealed):
        hashed = merkle.leaf_hash(leaf_of(log_id, index, each.revision, key_id, each.entry))
        mac = hmac.new(key, mac + hashed, hashlib.sha256).digest()
        out.append(Sealed(index, each.revision, key_id, each.entry, mac))
    return out


Tamper = Callable[[list[Sealed]], list[Sealed]]
ENTRY_TAMPERING: dict[str, Tamper] = {
    "edit": lambda s: [*s[:5], Sealed(5, s[5].revision, s[5].key_id, edited(s[5].entry), s[5].mac), *s[6:]],
    "insert": lambda s: [*s[:9], Sealed(9, s[9].revision, s[9].key_id, s[9].entry, s[9].mac), *s[9:]],
    "delete": lambda s: [*s[:12], *s[13:]],
    "reorder": lambda s: [*s[:3], s[4], s[3], *s[5:]],
    "truncate the tail": lambda s: s[:-7],
}


async def verified(ledger: Ledger, chain_keys: bool = True) -> Report:
    checkpoint = newest_in_file(ledger.checkpoints)
    assert checkpoint is not None and checkpoint.size == ENTRY_COUNT
    lines = [line async for line in export_lines(ledger.sealer.ledger)]
    keys = ledger.keys.chain_keys if chain_keys else None
    report = verify(lines, checkpoint, ledger.keys.public_key, keys)
    # Small chunks put most entries on the bulk path (the default's one chunk is all line by line, as it
    # holds the checkpoints): the same verdicts, the same problems.
    assert verify(lines, checkpoint, ledger.keys.public_key, keys, chunk=4).lines() == report.lines()
    return report


async def sealed_ledger(ledger: Ledger) -> list[Sealed]:
    await write_some(ledger.store, ENTRY_COUNT)
    await ledger.sealer.seal_all()
    sealed = await read_ledger(ledger.sealer.ledger)
    assert len(sealed) == ENTRY_COUNT
    return sealed


async def test_an_untouched_ledger_verifies(ledger: Ledger) -> None:
    await sealed_ledger(ledger)
    report = await verified(ledger)
    assert report.ok, report.lines()
    assert report.entries == ENTRY_COUNT


@pytest.mark.parametrize("how", list(ENTRY_TAMPERING))
async def test_tampered_entries_are_detected(ledger: Ledger, how: str) -> None:
    sealed = await sealed_ledger(ledger)
    await rewrite(ledger.sealer.ledger, ENTRY_TAMPERING[how](sealed))
    for key in await keys_of(
        ledger.sealer.ledger, CHECKPOINTS
    ):  # and hide what the ledger's own checkpoints say
        await ledger.sealer.ledger.delete(key)
    report = await verified(ledger)
    assert not report.ok
    if how == "truncate the tail":
        assert not report.completeness.ok and report.integrity.ok, report.lines()
    else:
        assert not report.integrity.ok, report.lines()
    assert not (await verified(ledger, chain_keys=False)).ok  # the checkpoint alone catches it too


async def test_deleting_the_whole_ledger_is_detected_as_incomplete(ledger: Ledger) -> None:
    await sealed_ledger(ledger)
    store = ledger.sealer.ledger
    for key in [*await keys_of(store, ENTRIES), *await keys_of(store, CHECKPOINTS), HEAD]:
        await store.delete(key)
    report = await verified(ledger)
    assert not report.completeness.ok and report.entries == 0, report.lines()


@pytest.mark.parametrize("how", ["edit", "delete", "reorder"])
async def test_a_rewrite_re_chained_with_the_hmac_key_is_detected_by_the_outside_checkpoint(
    ledger: Ledger, how: str
) -> None:
    sealed = await sealed_ledger(ledger)
    key_id = ledger.keys.current_key_id
    forged = rechained(
        ledger.sealer.log_id, ENTRY_TAMPERING[how](sealed), ledger.keys.chain_keys[key_id], key_id
    )
    if how == "delete":  # pad back to the checkpoint's size with a re-chained copy of the last entry
        forged = rechained(
            ledger.sealer.log_id, [*forged, forged[-1]], ledger.keys.chain_keys[key_id], key_id
        )
        forged[-1] = Sealed(
            forged[-1].index, forged[-2].revision + 1, key_id, forged[-1].entry, forged[-1].mac
        )
        forged = rechained(ledger.sealer.log_id, forged, ledger.keys.chain_keys[key_id], key_id)
    store = ledger.sealer.ledger
    await rewrite(store, forged)
    for key in await keys_of(store, CHECKPOINTS):
        await store.delete(key)
    report = await verified(ledger)
    assert not report.integrity.ok, report.lines()
    assert not any("HMAC link" in problem for problem in report.integrity.problems)  # the chain itself holds


async def plant_journal_entry(backend: Backend, store: Store, key: str) -> None:
    """Put an entry in the audit journal behind the store's back at the revision the next write of `key`
    takes (the cluster: in its partition's journal, a few seconds of its clock ahead), so that write cannot
    append its own."""
    inner: Any = store
    revision = int(await store.head_cursor()) + 1
    if backend.name == "redis-cluster":
        partitions = await inner._ready()
        number = partition_of(key, len(partitions))
        ahead = (await inner._primaries_time() // SUFFIX + 3 * MICROS) * SUFFIX + number
        await inner._client.xadd(partitions[number].audit, {"a": b"planted"}, id=f"{ahead}-0")
    elif backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(database_path(backend.url))) as db, db:
            db.execute(f'INSERT INTO "audit_{inner._namespace}" VALUES (?, ?)', (revision, b"planted"))
    elif backend.name == "redis":  # a stream ID at or after the next revision's makes its XADD fail
        await inner._execute("XADD", inner._audit_key, f"{revision}-0", "a", "planted")
    else:
        await inner._audit.insert_one({"_id": revision, "entry": b"planted"})


async def test_a_failed_journal_append_fails_the_write_and_leaves_no_record(
    ledger: Ledger, backend: Backend
) -> None:
    await write_some(ledger.store, 3)
    await plant_journal_entry(backend, ledger.store.inner, "planted-over")
    call = audit_call("/microstate.profile.v2.ProfileService/CreateProfile", "microstate.profile.v2")
    with call, pytest.raises(Exception):  # noqa: B017 (each backend fails in its own words; that it fails is the point)
        await ledger.store.put("planted-over", b"value", if_match=ABSENT)
    assert await ledger.store.get("planted-over") is None

    async def journal_of_four() -> bool:  # the cluster's planted entry is final only once its time has come
        return len(await ledger.store.inner.audit_journal(0, 100)) == 4

    await until(journal_of_four, within=20, what="the journal to hold the three entries and the planted one")
    entries = await ledger.store.inner.audit_journal(0, 100)
    assert [entry for _, entry in entries].count(b"planted") == 1
