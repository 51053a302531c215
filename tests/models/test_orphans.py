"""Orphan blobs: an upload whose blob was published but whose version record never committed (a real
redis-server killed between the two) leaves a blob no version names; the sweep removes it once the grace
period (the upload TTL) has passed, and spares named blobs, fresh ones, and ones claimed meanwhile."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from microstate.server.models.domain import ModelsDomain
from microstate.server.models.model import UploadData
from microstate.server.store import Store, open_store
from microstate.server.store.base import StoreUnavailable
from microstate.server.store.blobs.base import BlobInfo
from microstate.server.store.blobs.file import FileBlobs
from tests.conformance_blobs.helpers import Clock
from tests.models.conftest import chunked, digest_of
from tests.support.redis_server import RedisServer, running_redis_server

TTL = 3600.0


class KillsRedisAfterPublishing(FileBlobs):
    """A real file blob store that, while `armed`, kills the records store's redis-server right after a
    commit has published its blob: the moment the records store goes down in the real failure. And
    `before_delete`, if set, runs once before a delete: something landing in the middle of a sweep."""

    redis: RedisServer
    armed = False
    before_delete: Callable[[], Awaitable[None]] | None = None

    async def commit(self, upload_id: str, digest: str, size: int) -> BlobInfo:
        info = await super().commit(upload_id, digest, size)
        if self.armed:
            self.redis.kill()
        return info

    async def delete(self, digest: str, *, claimed_before: float | None = None) -> bool:
        landing, self.before_delete = self.before_delete, None
        if landing is not None:
            await landing()
        return await super().delete(digest, claimed_before=claimed_before)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock(now=1_800_000_000.0)


@pytest.fixture
async def records(redis: RedisServer) -> AsyncIterator[Store]:
    store = await open_store(redis.url, "models-orphans")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def blobs(tmp_path: Path, redis: RedisServer, clock: Clock) -> AsyncIterator[KillsRedisAfterPublishing]:
    store = await KillsRedisAfterPublishing.open(f"file://{tmp_path / 'blobs'}", "models", clock=clock)
    assert isinstance(store, KillsRedisAfterPublishing)
    store.redis = redis
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def domain(records: Store, blobs: FileBlobs, clock: Clock) -> ModelsDomain:
    return ModelsDomain(records, blobs, clock=lambda: int(clock() * 1e9), upload_ttl=TTL)


async def _upload(domain: ModelsDomain, upload_id: str, data: bytes) -> int:
    """Upload `data` to model "m" as a client would; the version made."""

    async def chunks() -> AsyncIterator[bytes]:
        for part in chunked(data):
            yield part

    declared = UploadData("m", digest_of(data), len(data), "application/octet-stream", {})
    done = await domain.upload(upload_id, declared, 0, chunks())
    return done.version.data.version


async def _orphan(domain: ModelsDomain, blobs: KillsRedisAfterPublishing, data: bytes) -> None:
    """Upload `data` with the records store dying right after its blob is published; bring it back."""
    blobs.armed = True
    try:
        with pytest.raises(StoreUnavailable):
            await _upload(domain, f"orphan-{digest_of(data)[7:19]}", data)
    finally:
        blobs.armed = False
        blobs.redis.start()
    assert await blobs.stat(digest_of(data)) is not None  # published, and named by no version


async def test_a_blob_whose_version_never_committed_is_swept_after_the_grace_period(
    domain: ModelsDomain, blobs: KillsRedisAfterPublishing, clock: Clock
) -> None:
    orphan, named = os.urandom(300_000), os.urandom(200_000)
    await _orphan(domain, blobs, orphan)
    assert await _upload(domain, "named", named) == 1
    assert await domain.sweep() == 0, "within the grace period an upload may still be committing"

    clock.advance(TTL + 1)
    fresh = os.urandom(1000)  # published just now, its version not yet written: an upload under way
    await _orphan(domain, blobs, fresh)
    assert await domain.sweep() == 1

    assert await blobs.stat(digest_of(orphan)) is None
    assert await blobs.stat(digest_of(named)) is not None
    assert await blobs.stat(digest_of(fresh)) is not None
    assert [info.digest async for info in blobs.list()] != []
    await domain.collect()  # what the server runs at start and every interval: idempotent
    assert await blobs.stat(digest_of(named)) is not None


async def test_an_upload_naming_an_orphan_during_a_sweep_claims_it_so_the_sweep_keeps_it(
    domain: ModelsDomain, blobs: KillsRedisAfterPublishing, clock: Clock
) -> None:
    data = os.urandom(300_000)
    await _orphan(domain, blobs, data)
    clock.advance(TTL + 1)
    retried: list[int] = []

    async def retry() -> None:  # after the sweep found no version naming the blob, before it deletes
        declared = UploadData("m", digest_of(data), len(data), "application/octet-stream", {})
        done = await domain.upload("retry", declared, 0, _no_chunks())  # held: no bytes sent
        assert done.deduplicated
        retried.append(done.version.data.version)

    blobs.before_delete = retry
    assert await domain.sweep() == 0

    assert retried == [1]
    assert await blobs.stat(digest_of(data)) is not None, "version 1 names it: it must stay"


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing
