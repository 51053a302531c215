"""What the blob tests share: payloads, whole uploads and reads, and a clock the tests move."""

from __future__ import annotations

import hashlib
import random

import pytest

from microstate.server.store.blobs import BlobInfo, BlobStore, UploadNotFound
from tests.conformance_blobs.conftest import BlobBackend


def payload(size: int, seed: int = 0) -> bytes:
    """`size` reproducible, incompressible bytes."""
    return random.Random(seed).randbytes(size)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def upload(store: BlobStore, upload_id: str, data: bytes, *, chunk: int = 64 * 1024) -> BlobInfo:
    """Begin, append `data` in chunks of `chunk` bytes, and commit it under its own digest and size."""
    offset = await store.begin(upload_id)
    for start in range(offset, len(data), chunk):
        offset = await store.append(upload_id, start, data[start : start + chunk])
    return await store.commit(upload_id, digest_of(data), len(data))


async def read_all(store: BlobStore, digest: str, offset: int = 0, limit: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest, offset, limit)])


async def assert_left_nothing(
    store: BlobStore, upload_id: str, backend: BlobBackend, namespace: str, *, digests: tuple[str, ...] = ()
) -> None:
    """The upload is over and left no trace: not found, none of `digests` visible, nothing in raw storage."""
    with pytest.raises(UploadNotFound):
        await store.offset(upload_id)
    for digest in digests:
        assert await store.stat(digest) is None
    assert backend.leftovers(namespace) == []


class Clock:
    """Unix time that moves only when told to: `open_blobs(..., clock=clock)`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
