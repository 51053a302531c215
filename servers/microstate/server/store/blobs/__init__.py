"""The content-addressed blob role: the `BlobStore` protocol (blobs/base.py) and `open_blobs`, which picks the
backend by URL scheme, as `open_store` does for records; backends are imported only when their scheme is used.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from microstate.server.store._shared import backend_class
from microstate.server.store.base import StoreError, StoreUnavailable
from microstate.server.store.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCapabilities,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    DigestMismatch,
    OffsetMismatch,
    OutOfRange,
    SizeMismatch,
    UploadNotFound,
    VerificationFailed,
)

# URL scheme -> "module:class"; each class has `async classmethod open(url, namespace, **options)`.
BLOB_BACKENDS: dict[str, str] = {
    "file": "microstate.server.store.blobs.file:FileBlobs",
    "mongodb": "microstate.server.store.blobs.mongo:MongoBlobs",
    "mongodb+srv": "microstate.server.store.blobs.mongo:MongoBlobs",
}


class _Backend(Protocol):
    @classmethod
    async def open(cls, url: str, namespace: str, **options: Any) -> BlobStore: ...


async def open_blobs(url: str, namespace: str, **options: Any) -> BlobStore:
    """Open the blob namespace `namespace` at `url`, creating it if needed.

    `file:///absolute/path`, `file://relative/path` (blobs/file.py), `mongodb://…`, `mongodb+srv://…`
    (blobs/mongo.py). `options` go to the backend's `open`: every backend takes `chunk_size` (the most bytes
    a read yields at once) and `clock` (a function giving Unix time, for create and activity times). An
    unknown scheme raises ValueError; an unusable location raises StoreUnavailable.
    """
    example = "file:///var/lib/microstate/blobs"
    backend = cast(_Backend, backend_class(BLOB_BACKENDS, url, "blob store", example))
    return await backend.open(url, namespace, **options)


__all__ = [
    "BLOB_BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "BlobCapabilities",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "DigestMismatch",
    "OffsetMismatch",
    "OutOfRange",
    "SizeMismatch",
    "StoreError",
    "StoreUnavailable",
    "UploadNotFound",
    "VerificationFailed",
    "open_blobs",
]
