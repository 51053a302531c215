"""What every blob backend shares: argument checks, per-upload locks, and the running hashes of uploads.

A backend subclasses `BlobStoreBase` and implements the `_hooks`, which get checked arguments (a digest as its
64 hex digits) and, for upload operations, run one at a time per upload within the process.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from typing import Any

from microstate.server.kit.locks import KeyedLocks
from microstate.server.store.blobs.base import (
    BlobCapabilities,
    BlobInfo,
    check_digest,
    check_range,
    check_upload_id,
)


class RunningHashes:
    """The SHA-256 state of the uploads this process appended to, each valid for one incarnation of the
    upload (`token`) at one offset. hashlib cannot save its state, so when it is missing or stale (after a
    restart, or when another process appended meanwhile) a backend hashes the stored bytes again."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[str, int, Any]] = {}

    def get(self, upload_id: str, token: str, offset: int) -> Any | None:
        """The hash of the upload's first `offset` bytes, if this process kept it; it may be updated."""
        state = self._states.get(upload_id)
        if state is None or state[:2] != (token, offset):
            return None
        return state[2]

    def put(self, upload_id: str, token: str, offset: int, hasher: Any) -> None:
        self._states[upload_id] = (token, offset, hasher)

    def drop(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


class BlobStoreBase(abc.ABC):
    """The BlobStore methods: checks, then the backend's hook (under the upload's lock for upload calls)."""

    capabilities: BlobCapabilities

    def __init__(self) -> None:
        self._locks = KeyedLocks()
        self._hashes = RunningHashes()

    async def stat(self, digest: str) -> BlobInfo | None:
        return await self._stat(check_digest(digest))

    def read(self, digest: str, offset: int = 0, limit: int | None = None) -> AsyncIterator[bytes]:
        hex_digest = check_digest(digest)
        check_range(offset, limit)
        return self._read(hex_digest, offset, limit)

    async def claim(self, digest: str) -> BlobInfo | None:
        return await self._claim(check_digest(digest))

    def list(self) -> AsyncIterator[BlobInfo]:
        return self._list()

    async def delete(self, digest: str, *, claimed_before: float | None = None) -> bool:
        return await self._delete(check_digest(digest), claimed_before)

    async def begin(self, upload_id: str) -> int:
        check_upload_id(upload_id)
        async with self._locks.hold(upload_id):
            return await self._begin(upload_id)

    async def offset(self, upload_id: str) -> int:
        check_upload_id(upload_id)
        return await self._offset(upload_id)

    async def append(self, upload_id: str, offset: int, chunk: bytes) -> int:
        return await self.append_all(upload_id, offset, (chunk,))

    async def append_all(self, upload_id: str, offset: int, chunks: Sequence[bytes]) -> int:
        check_upload_id(upload_id)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        async with self._locks.hold(upload_id):
            return await self._append_all(upload_id, offset, chunks or (b"",))

    async def _append_all(self, upload_id: str, offset: int, chunks: Sequence[bytes]) -> int:
        """One `_append` per chunk; a backend that can add several at a lower cost overrides this."""
        for chunk in chunks:
            offset = await self._append(upload_id, offset, chunk)
        return offset

    async def commit(self, upload_id: str, digest: str, size: int) -> BlobInfo:
        check_upload_id(upload_id)
        hex_digest = check_digest(digest)
        if size < 0:
            raise ValueError(f"size must be >= 0, not {size}")
        async with self._locks.hold(upload_id):
            return await self._commit(upload_id, hex_digest, size)

    async def abort(self, upload_id: str) -> bool:
        check_upload_id(upload_id)
        async with self._locks.hold(upload_id):
            return await self._abort(upload_id)

    async def collect(self, older_than: float) -> int:
        if older_than < 0:
            raise ValueError(f"older_than must be >= 0, not {older_than}")
        return await self._collect(older_than)

    @abc.abstractmethod
    async def _stat(self, hex_digest: str) -> BlobInfo | None: ...

    @abc.abstractmethod
    def _read(self, hex_digest: str, offset: int, limit: int | None) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def _claim(self, hex_digest: str) -> BlobInfo | None: ...

    @abc.abstractmethod
    def _list(self) -> AsyncIterator[BlobInfo]: ...

    @abc.abstractmethod
    async def _delete(self, hex_digest: str, claimed_before: float | None) -> bool: ...

    @abc.abstractmethod
    async def _begin(self, upload_id: str) -> int: ...

    @abc.abstractmethod
    async def _offset(self, upload_id: str) -> int: ...

    @abc.abstractmethod
    async def _append(self, upload_id: str, offset: int, chunk: bytes) -> int: ...

    @abc.abstractmethod
    async def _commit(self, upload_id: str, hex_digest: str, size: int) -> BlobInfo: ...

    @abc.abstractmethod
    async def _abort(self, upload_id: str) -> bool: ...

    @abc.abstractmethod
    async def _collect(self, older_than: float) -> int: ...
