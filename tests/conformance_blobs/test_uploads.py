"""Conformance: uploads resume where they stopped, are verified before anything is visible, and leave no
trace once committed, refused, aborted or collected."""

from __future__ import annotations

import signal

import pytest

from microstate.server.store.blobs import (
    BlobStore,
    DigestMismatch,
    OffsetMismatch,
    SizeMismatch,
    UploadNotFound,
)
from tests.conformance.waiting import DEADLINE
from tests.conformance_blobs.conftest import BlobBackend, BlobsFactory
from tests.conformance_blobs.helpers import Clock, assert_left_nothing, digest_of, payload, read_all, upload
from tests.support.processes import run_python

DATA = payload(200_000)


async def test_an_upload_begins_at_zero_and_counts_what_it_holds(blobs: BlobStore) -> None:
    assert await blobs.begin("u1") == 0
    assert await blobs.append("u1", 0, DATA[:1000]) == 1000
    assert await blobs.append("u1", 1000, b"") == 1000

    assert await blobs.offset("u1") == 1000
    assert await blobs.begin("u1") == 1000, "begin of an existing upload finds it again"


async def test_an_append_at_the_wrong_offset_is_refused_and_writes_nothing(blobs: BlobStore) -> None:
    await blobs.begin("u1")
    await blobs.append("u1", 0, DATA[:1000])

    for offset in (0, 999, 1001):
        with pytest.raises(OffsetMismatch) as raised:
            await blobs.append("u1", offset, DATA[offset : offset + 10])
        assert (raised.value.offset, raised.value.committed) == (offset, 1000)

    assert await blobs.offset("u1") == 1000
    await blobs.append("u1", 1000, DATA[1000:])
    info = await blobs.commit("u1", digest_of(DATA), len(DATA))
    assert await read_all(blobs, info.digest) == DATA


async def test_append_all_adds_the_chunks_in_order_in_one_call(blobs: BlobStore) -> None:
    await blobs.begin("u1")
    pieces = [DATA[:1000], DATA[1000:1000], DATA[1000:70_000], DATA[70_000:]]
    assert await blobs.append_all("u1", 0, pieces) == len(DATA)

    with pytest.raises(OffsetMismatch):
        await blobs.append_all("u1", 10, [b"x", b"y"])
    assert await blobs.offset("u1") == len(DATA), "a refused call writes nothing"
    info = await blobs.commit("u1", digest_of(DATA), len(DATA))
    assert await read_all(blobs, info.digest) == DATA


async def test_an_unknown_upload_is_not_found(blobs: BlobStore) -> None:
    with pytest.raises(UploadNotFound):
        await blobs.offset("nope")
    with pytest.raises(UploadNotFound):
        await blobs.append("nope", 0, b"x")
    with pytest.raises(UploadNotFound):
        await blobs.commit("nope", digest_of(b"x"), 1)
    assert await blobs.abort("nope") is False


@pytest.mark.parametrize("upload_id", ["", ".hidden", "../x", "a/b", "a" * 129, "é"])
async def test_a_malformed_upload_id_is_a_value_error(blobs: BlobStore, upload_id: str) -> None:
    with pytest.raises(ValueError, match="upload id"):
        await blobs.begin(upload_id)
    with pytest.raises(ValueError, match="upload id"):
        await blobs.append(upload_id, 0, b"x")


async def test_an_upload_resumes_in_a_reopened_store_after_a_cut(
    blobs: BlobStore, blobs_factory: BlobsFactory, blob_backend: BlobBackend, namespace: str
) -> None:
    await blobs.begin("u1")
    await blobs.append("u1", 0, DATA[:70_000])
    await blobs.close()  # the server stops; a new one takes over

    restarted = await blobs_factory()
    assert await restarted.begin("u1") == 70_000
    await restarted.append("u1", 70_000, DATA[70_000:150_000])
    await restarted.close()

    again = await blobs_factory()
    offset = await again.offset("u1")
    await again.append("u1", offset, DATA[offset:])
    info = await again.commit("u1", digest_of(DATA), len(DATA))

    assert await read_all(again, info.digest) == DATA
    assert blob_backend.leftovers(namespace) == []


async def test_two_stores_appending_in_turn_commit_the_right_digest(
    blobs: BlobStore, blobs_factory: BlobsFactory
) -> None:
    """Two server processes taking turns on one upload: each one's running hash goes stale in between."""
    other = await blobs_factory()
    await blobs.begin("u1")
    offset = 0
    for turn, start in enumerate(range(0, len(DATA), 30_000)):
        offset = await (blobs, other)[turn % 2].append("u1", offset, DATA[start : start + 30_000])

    info = await blobs.commit("u1", digest_of(DATA), len(DATA))

    assert await read_all(other, info.digest) == DATA


async def test_an_upload_begun_again_under_the_same_id_is_hashed_afresh(
    blobs: BlobStore, blobs_factory: BlobsFactory
) -> None:
    """One store hashed the first incarnation of `u1` up to 1000 bytes; another store aborts it and uploads
    1000 other bytes under the same id: the first store must not take its old hash for theirs."""
    other = await blobs_factory()
    await blobs.begin("u1")
    await blobs.append("u1", 0, b"a" * 1000)
    await other.abort("u1")
    await other.begin("u1")
    await other.append("u1", 0, b"b" * 1000)

    await blobs.append("u1", 1000, b"c" * 1000)
    expected = b"b" * 1000 + b"c" * 1000
    info = await blobs.commit("u1", digest_of(expected), len(expected))

    assert await read_all(blobs, info.digest) == expected


# Runs in a child process: begin an upload, append what stdin's first line says, report the offset, then die
# by SIGKILL without closing anything, the way a crashed server process would.
_KILLED_UPLOADER = """
import asyncio, os, random, signal, sys
from microstate.server.store.blobs import open_blobs

async def main() -> None:
    store = await open_blobs(sys.argv[1], sys.argv[2])
    data = random.Random(0).randbytes(int(sys.argv[3]))
    offset = await store.begin("u1")
    for start in range(0, len(data), 16_384):
        offset = await store.append("u1", offset, data[start : start + 16_384])
    print(offset, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_an_upload_resumes_after_its_process_was_killed(
    blob_backend: BlobBackend, namespace: str, blobs_factory: BlobsFactory
) -> None:
    assert payload(200_000, seed=0) == DATA, "the child builds the same payload"
    status, output, errors = await run_python(
        _KILLED_UPLOADER, blob_backend.url, namespace, "120000", within=DEADLINE * 2
    )
    assert status == -signal.SIGKILL, errors
    acknowledged = int(output)

    store = await blobs_factory()
    assert await store.offset("u1") == acknowledged == 120_000
    await store.append("u1", acknowledged, DATA[acknowledged:])
    info = await store.commit("u1", digest_of(DATA), len(DATA))

    assert await read_all(store, info.digest) == DATA


@pytest.mark.parametrize("flaw", ["flipped byte", "declared digest of other bytes"])
async def test_a_wrong_digest_is_refused_and_leaves_nothing(
    blobs: BlobStore, blob_backend: BlobBackend, namespace: str, flaw: str
) -> None:
    flawed = bytearray(DATA)
    if flaw == "flipped byte":
        flawed[123_456] ^= 0x01
    sent = bytes(flawed)
    declared = digest_of(DATA if flaw == "flipped byte" else b"something else")
    await blobs.begin("u1")
    await blobs.append("u1", 0, sent)

    with pytest.raises(DigestMismatch) as raised:
        await blobs.commit("u1", declared, len(DATA))

    assert (raised.value.declared, raised.value.actual) == (declared, digest_of(sent))
    await assert_left_nothing(blobs, "u1", blob_backend, namespace, digests=(declared, digest_of(sent)))


@pytest.mark.parametrize("declared", [len(DATA) - 1, len(DATA) + 1, 0])
async def test_a_wrong_size_is_refused_and_leaves_nothing(
    blobs: BlobStore, blob_backend: BlobBackend, namespace: str, declared: int
) -> None:
    await blobs.begin("u1")
    await blobs.append("u1", 0, DATA)

    with pytest.raises(SizeMismatch) as raised:
        await blobs.commit("u1", digest_of(DATA), declared)

    assert (raised.value.declared, raised.value.actual) == (declared, len(DATA))
    await assert_left_nothing(blobs, "u1", blob_backend, namespace, digests=(digest_of(DATA),))


async def test_a_committed_upload_is_over(
    blobs: BlobStore, blob_backend: BlobBackend, namespace: str
) -> None:
    await upload(blobs, "u1", DATA)

    with pytest.raises(UploadNotFound):
        await blobs.offset("u1")
    with pytest.raises(UploadNotFound):
        await blobs.commit("u1", digest_of(DATA), len(DATA))
    assert blob_backend.leftovers(namespace) == []
    assert await blobs.begin("u1") == 0, "the id may be used again"


async def test_committing_a_digest_already_held_keeps_the_first_blob_and_drops_the_copy(
    blobs_factory: BlobsFactory, blob_backend: BlobBackend, namespace: str
) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    first = await upload(store, "u1", DATA)
    clock.advance(60)

    second = await upload(store, "u2", DATA)

    assert (second.digest, second.size) == (first.digest, first.size)
    assert second.create_time == clock.now, "claimed: a sweep of unnamed blobs must not take it now"
    assert await store.stat(first.digest) == second
    assert await read_all(store, first.digest) == DATA
    assert blob_backend.leftovers(namespace) == []


async def test_a_wrong_upload_of_a_digest_already_held_is_still_refused(blobs: BlobStore) -> None:
    held = await upload(blobs, "u1", DATA)
    await blobs.begin("u2")
    await blobs.append("u2", 0, b"not those bytes")

    with pytest.raises(SizeMismatch):
        await blobs.commit("u2", held.digest, held.size)

    assert await read_all(blobs, held.digest) == DATA


async def test_an_aborted_upload_leaves_nothing(
    blobs: BlobStore, blob_backend: BlobBackend, namespace: str
) -> None:
    await blobs.begin("u1")
    await blobs.append("u1", 0, DATA)

    assert await blobs.abort("u1") is True

    await assert_left_nothing(blobs, "u1", blob_backend, namespace, digests=(digest_of(DATA),))
    assert await blobs.abort("u1") is False


async def test_collect_removes_only_uploads_idle_for_longer_than_asked(
    blobs_factory: BlobsFactory, blob_backend: BlobBackend, namespace: str
) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    held = await upload(store, "done", DATA)
    await store.begin("abandoned")
    await store.append("abandoned", 0, DATA[:1000])
    await store.begin("never-written")
    await store.begin("active")
    await store.append("active", 0, DATA[:1000])
    clock.advance(100)
    await store.append("active", 1000, DATA[1000:2000])
    await store.begin("fresh")
    clock.advance(50)

    assert await store.collect(older_than=200) == 0
    assert await store.collect(older_than=120) == 2

    for gone in ("abandoned", "never-written"):
        with pytest.raises(UploadNotFound):
            await store.offset(gone)
    assert await store.offset("active") == 2000
    assert await store.offset("fresh") == 0
    assert await read_all(store, held.digest) == DATA, "collect never touches blobs"
    await store.abort("active")
    await store.abort("fresh")
    assert blob_backend.leftovers(namespace) == []


async def test_collect_with_nothing_to_collect_is_zero(blobs: BlobStore) -> None:
    assert await blobs.collect(older_than=0) == 0
    with pytest.raises(ValueError, match="older_than"):
        await blobs.collect(older_than=-1)
