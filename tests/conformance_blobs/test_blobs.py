"""Conformance: blobs go in whole, come out byte for byte, in bounded chunks, from any offset."""

from __future__ import annotations

import pytest

from microstate.server.store.blobs import BlobNotFound, BlobStore, OutOfRange
from tests.conformance_blobs.conftest import BlobsFactory
from tests.conformance_blobs.helpers import Clock, digest_of, payload, read_all, upload

SIZE = 300_001  # not a multiple of any chunk size


async def test_a_committed_blob_reads_back_byte_for_byte(blobs_factory: BlobsFactory) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    data = payload(SIZE)

    info = await upload(store, "u1", data)

    assert (info.digest, info.size, info.create_time) == (digest_of(data), SIZE, clock.now)
    assert await store.stat(info.digest) == info
    assert await read_all(store, info.digest) == data
    other = await blobs_factory()
    assert await other.stat(info.digest) == info
    assert await read_all(other, info.digest) == data


async def test_an_empty_blob_is_a_blob(blobs: BlobStore) -> None:
    info = await upload(blobs, "empty", b"")

    assert info.size == 0
    assert await blobs.stat(digest_of(b"")) == info
    assert await read_all(blobs, info.digest) == b""


async def test_a_missing_blob_is_none_not_found_and_not_deleted(blobs: BlobStore) -> None:
    digest = digest_of(b"never uploaded")

    assert await blobs.stat(digest) is None
    with pytest.raises(BlobNotFound):
        await read_all(blobs, digest)
    assert await blobs.delete(digest) is False


async def test_a_deleted_blob_is_gone(blobs: BlobStore) -> None:
    info = await upload(blobs, "u1", b"short-lived")

    assert await blobs.delete(info.digest) is True

    assert await blobs.stat(info.digest) is None
    with pytest.raises(BlobNotFound):
        await read_all(blobs, info.digest)
    assert await blobs.delete(info.digest) is False


async def test_a_read_under_way_finishes_although_the_blob_is_deleted(blobs_factory: BlobsFactory) -> None:
    store = await blobs_factory(chunk_size=1000)
    data = payload(10_000)
    info = await upload(store, "u1", data)
    chunks = store.read(info.digest)
    first = await anext(chunks)

    assert await store.delete(info.digest) is True

    assert first + b"".join([chunk async for chunk in chunks]) == data


@pytest.mark.parametrize(
    ("offset", "limit"),
    [
        (0, None),
        (1, None),
        (SIZE - 1, None),
        (SIZE, None),
        (0, 0),
        (0, 1),
        (12_345, 100_000),
        (SIZE - 10, 999),
    ],
)
async def test_offset_and_limit_select_a_slice(blobs: BlobStore, offset: int, limit: int | None) -> None:
    data = payload(SIZE)
    info = await upload(blobs, "u1", data)

    got = await read_all(blobs, info.digest, offset, limit)

    assert got == data[offset : None if limit is None else offset + limit]


async def test_an_offset_past_the_end_is_out_of_range(blobs: BlobStore) -> None:
    info = await upload(blobs, "u1", b"12345")

    with pytest.raises(OutOfRange) as raised:
        await read_all(blobs, info.digest, offset=6)

    assert (raised.value.offset, raised.value.size) == (6, 5)


async def test_reads_come_in_chunks_of_at_most_chunk_size(blobs_factory: BlobsFactory) -> None:
    store = await blobs_factory(chunk_size=1000)
    data = payload(10_500)
    info = await upload(store, "u1", data, chunk=4096)

    sizes = [len(chunk) async for chunk in store.read(info.digest, offset=250)]

    assert sum(sizes) == 10_250
    assert max(sizes) <= 1000
    assert len(sizes) >= 11


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:",
        "sha256:" + "A" * 64,
        "sha256:" + "0" * 63,
        "sha512:" + "0" * 64,
        "0" * 64,
        "sha256:../x",
    ],
)
async def test_a_malformed_digest_is_a_value_error(blobs: BlobStore, digest: str) -> None:
    with pytest.raises(ValueError, match="digest"):
        await blobs.stat(digest)
    with pytest.raises(ValueError, match="digest"):
        await read_all(blobs, digest)
    with pytest.raises(ValueError, match="digest"):
        await blobs.delete(digest)
    await blobs.begin("u1")
    with pytest.raises(ValueError, match="digest"):
        await blobs.commit("u1", digest, 0)
    assert await blobs.offset("u1") == 0, "a refused commit must leave the upload as it was"


async def test_a_negative_offset_or_limit_is_a_value_error(blobs: BlobStore) -> None:
    info = await upload(blobs, "u1", b"abc")

    with pytest.raises(ValueError, match="offset"):
        await read_all(blobs, info.digest, offset=-1)
    with pytest.raises(ValueError, match="limit"):
        await read_all(blobs, info.digest, limit=-1)


async def test_list_gives_every_blob_with_its_size_and_time(blobs_factory: BlobsFactory) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    first = await upload(store, "u1", payload(1000, seed=1))
    clock.advance(10)
    second = await upload(store, "u2", payload(2000, seed=2))
    await store.begin("under-way")  # an upload is no blob

    listed = sorted([info async for info in store.list()], key=lambda info: info.create_time)

    assert listed == [first, second]


async def test_a_claim_renews_a_blobs_time_and_a_delete_claimed_before_spares_it(
    blobs_factory: BlobsFactory,
) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    info = await upload(store, "u1", b"named again later")
    clock.advance(100)
    cutoff = clock.now - 50  # a sweep that spares what was claimed in the last 50 s

    claimed = await store.claim(info.digest)

    assert claimed is not None and claimed.create_time == clock.now and claimed.size == info.size
    assert await store.delete(info.digest, claimed_before=cutoff) is False
    assert await store.stat(info.digest) == claimed
    assert await store.claim(digest_of(b"never uploaded")) is None


async def test_a_delete_claimed_before_removes_an_unclaimed_blob(blobs_factory: BlobsFactory) -> None:
    clock = Clock()
    store = await blobs_factory(clock=clock)
    info = await upload(store, "u1", b"nobody names me")
    clock.advance(100)

    assert await store.delete(info.digest, claimed_before=clock.now - 50) is True

    assert await store.stat(info.digest) is None
    assert [blob async for blob in store.list()] == []
    assert await store.claim(info.digest) is None  # a claim after the delete finds nothing
