"""The MongoDB blob backend's own promises: deleted blobs' chunks outlive reads under way, then go; chunks a
crash left unnamed are collected. These tests look inside the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo.collection import Collection

from microstate.server.store.blobs import BlobStore
from microstate.server.store.blobs.mongo import TRASH_GRACE, MongoBlobs
from tests.conformance_blobs.conftest import mongo_database
from tests.conformance_blobs.helpers import Clock, payload, read_all, upload
from tests.support.mongo_server import MongoServer

pytestmark = pytest.mark.mongo
Chunks = Collection[dict[str, Any]]


@pytest.fixture
def namespace() -> str:
    return f"blobs{uuid.uuid4().hex}"


@pytest.fixture
def chunks(mongo_server: MongoServer, namespace: str) -> Iterator[Chunks]:
    """The namespace's chunk collection, seen directly."""
    with mongo_database(mongo_server.url) as db:
        yield db[f"blob_chunks.{namespace}"]


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def blobs(mongo_server: MongoServer, namespace: str, clock: Clock) -> AsyncIterator[BlobStore]:
    store = await MongoBlobs.open(mongo_server.url, namespace, chunk_size=1000, clock=clock)
    yield store
    await store.close()


async def test_a_deleted_blob_keeps_its_chunks_for_reads_until_the_grace_is_over(
    blobs: BlobStore, chunks: Chunks, clock: Clock
) -> None:
    data = payload(10_000)
    info = await upload(blobs, "u1", data)
    reading = blobs.read(info.digest)
    first = await anext(reading)
    assert await blobs.delete(info.digest) is True

    assert await blobs.collect(older_than=0) == 0
    assert first + b"".join([chunk async for chunk in reading]) == data

    clock.advance(TRASH_GRACE + 1)
    await blobs.collect(older_than=0)
    assert chunks.count_documents({}) == 0


async def test_chunks_nothing_names_are_collected(blobs: BlobStore, chunks: Chunks) -> None:
    held = await upload(blobs, "u1", payload(3000))
    await blobs.begin("u2")
    await blobs.append("u2", 0, b"in progress")
    chunks.insert_one({"_id": f"{'0' * 32}:{0:020d}", "set": "0" * 32, "data": b"left by a crash"})

    assert await blobs.collect(older_than=3600) == 0

    assert chunks.count_documents({"set": "0" * 32}) == 0
    assert await read_all(blobs, held.digest) == payload(3000)
    assert await blobs.offset("u2") == len(b"in progress")
