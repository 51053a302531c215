"""Conformance: racing uploads, commits and readers never produce a wrong, partial or duplicated blob."""

from __future__ import annotations

import asyncio

from microstate.server.store.blobs import BlobInfo, BlobNotFound, BlobStore, OffsetMismatch
from tests.conformance_blobs.conftest import BlobBackend, BlobsFactory
from tests.conformance_blobs.helpers import digest_of, payload, read_all, upload

COMMITTERS = 8


async def test_concurrent_commits_of_the_same_digest_all_return_the_one_blob(
    blobs: BlobStore, blobs_factory: BlobsFactory, blob_backend: BlobBackend, namespace: str
) -> None:
    data = payload(500_000)
    stores = [blobs, await blobs_factory()]
    for n in range(COMMITTERS):
        await stores[n % 2].begin(f"u{n}")
        await stores[n % 2].append(f"u{n}", 0, data)

    infos = await asyncio.gather(
        *(stores[n % 2].commit(f"u{n}", digest_of(data), len(data)) for n in range(COMMITTERS))
    )

    assert {(info.digest, info.size) for info in infos} == {(digest_of(data), len(data))}
    assert await blobs.stat(digest_of(data)) in infos
    assert await read_all(blobs, digest_of(data)) == data
    assert blob_backend.leftovers(namespace) == []


async def test_of_concurrent_appends_at_one_offset_exactly_one_lands(
    blobs: BlobStore, blobs_factory: BlobsFactory
) -> None:
    stores = [blobs, await blobs_factory()]
    await blobs.begin("u1")
    chunks = [bytes([n]) * 100_000 for n in range(COMMITTERS)]

    async def append(n: int) -> bytes | None:
        try:
            await stores[n % 2].append("u1", 0, chunks[n])
        except OffsetMismatch:
            return None
        return chunks[n]

    landed = [chunk for chunk in await asyncio.gather(*(append(n) for n in range(COMMITTERS))) if chunk]

    assert len(landed) == 1
    assert await blobs.offset("u1") == 100_000
    info = await blobs.commit("u1", digest_of(landed[0]), 100_000)
    assert await read_all(blobs, info.digest) == landed[0]


async def test_a_reader_during_a_commit_sees_nothing_or_the_whole_blob(
    blobs: BlobStore, blobs_factory: BlobsFactory
) -> None:
    reader = await blobs_factory()
    data = payload(4 * 1024 * 1024)
    digest = digest_of(data)
    observed: list[str] = []

    async def watch(done: asyncio.Event) -> None:
        """Stat and read the digest over and over until the commit is over, then once more."""
        while True:
            finished = done.is_set()
            info = await reader.stat(digest)
            if info is not None:
                assert info.size == len(data), "stat showed a partial blob"
            try:
                got = await read_all(reader, digest)
            except BlobNotFound:
                observed.append("absent")
            else:
                assert got == data, f"a read returned {len(got)} bytes of a partial or wrong blob"
                observed.append("whole")
            if finished:
                return

    for attempt in range(10):
        upload_id = f"u{attempt}"
        await blobs.begin(upload_id)
        await blobs.append(upload_id, 0, data)
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        try:
            info: BlobInfo = await blobs.commit(upload_id, digest, len(data))
        finally:
            done.set()
        await watcher
        assert info.size == len(data)
        assert observed[-1] == "whole"
        assert await blobs.delete(digest) is True

    assert "absent" in observed, "the reader never looked before a commit; the test proved nothing"


async def test_many_uploads_at_once_each_commit_their_own_blob(blobs: BlobStore) -> None:
    datas = [payload(50_000, seed=n) for n in range(16)]

    infos = await asyncio.gather(*(upload(blobs, f"u{n}", data, chunk=7000) for n, data in enumerate(datas)))

    for info, data in zip(infos, datas, strict=True):
        assert info.digest == digest_of(data)
        assert await read_all(blobs, info.digest) == data
