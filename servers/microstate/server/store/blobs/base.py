"""The content-addressed blob role: one async interface every blob backend implements.

A blob store holds one namespace (one microstate) of immutable byte strings, each named by its digest,
``sha256:<64 lowercase hex>``. Blobs arrive through *uploads*, which are resumable: an upload keeps the bytes
it has been given under a caller-chosen id, `offset` says how many it holds (so a cut upload continues where
it stopped, after a restart too), and `commit` checks the declared size and digest before the blob becomes
visible, all at once: a reader never sees part of a blob, and a rejected upload leaves nothing behind.

Memory stays flat whatever the blob's size: uploads are hashed as they arrive and reads yield bounded chunks.

Uploading what the store already holds can be skipped: `stat(digest)` first, and send no bytes when it
answers (what OCI's cross-repository mount and the registry's zero-byte re-upload do). Committing an upload
whose digest already exists is also fine: it is verified, then its bytes are dropped.

Backends raise store/base.py's StoreError and StoreUnavailable, the errors below, and ValueError for a
malformed digest, upload id, offset or size.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from microstate.server.store.base import StoreError

DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
"""The only digest form: the algorithm, a colon, and 64 lowercase hex digits (as OCI writes them)."""
UPLOAD_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Upload ids: safe as a file name and a key on every backend."""
DEFAULT_CHUNK_SIZE: Final = 256 * 1024
"""Bytes per chunk `read` yields at most (issue #13's 256 KiB, inside gRPC's 4 MiB message limit)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    """``sha256:<hex>``."""
    size: int
    """Bytes."""
    create_time: float
    """Unix time of the commit that made the blob visible, or of its last `claim` if later, by the store's
    clock: how long the blob has gone unclaimed, for sweeps of blobs nothing names."""


@dataclass(frozen=True, slots=True)
class BlobCapabilities:
    """What a backend guarantees beyond the protocol, so callers and tests can adapt."""

    durable: bool
    """A committed blob survives a crash of the process and of the machine."""
    shared: bool
    """Several server processes may use the same store at once (an upload may resume on another one)."""


class BlobNotFound(StoreError):
    """`read` of a digest the store does not hold."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"no blob {digest}")
        self.digest = digest


class OutOfRange(StoreError):
    """`read` from an offset past the end of the blob (reading from exactly the end yields nothing)."""

    def __init__(self, digest: str, offset: int, size: int) -> None:
        super().__init__(f"offset {offset} is past the end of {digest} ({size} bytes)")
        self.digest, self.offset, self.size = digest, offset, size


class UploadNotFound(StoreError):
    """The upload id names no upload: never begun, or already committed, aborted or collected."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload {upload_id!r}")
        self.upload_id = upload_id


class OffsetMismatch(StoreError):
    """`append` at an offset other than the upload's committed offset (`committed`): resume from there."""

    def __init__(self, upload_id: str, offset: int, committed: int) -> None:
        super().__init__(
            f"upload {upload_id!r} holds {committed} bytes: append at offset {committed}, not {offset}"
        )
        self.upload_id, self.offset, self.committed = upload_id, offset, committed


class VerificationFailed(StoreError):
    """`commit` found the upload's bytes differ from what was declared; the upload is gone, nothing is
    visible: the client must upload again from the start."""


class SizeMismatch(VerificationFailed):
    def __init__(self, upload_id: str, declared: int, actual: int) -> None:
        super().__init__(f"upload {upload_id!r} holds {actual} bytes, not the {declared} declared")
        self.upload_id, self.declared, self.actual = upload_id, declared, actual


class DigestMismatch(VerificationFailed):
    def __init__(self, upload_id: str, declared: str, actual: str) -> None:
        super().__init__(f"upload {upload_id!r} hashes to {actual}, not the {declared} declared")
        self.upload_id, self.declared, self.actual = upload_id, declared, actual


def check_digest(digest: str) -> str:
    """The 64 hex digits of `digest`; ValueError unless it is ``sha256:<64 lowercase hex>``."""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ValueError(f"bad digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest[len("sha256:") :]


def check_upload_id(upload_id: str) -> None:
    if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(
            f"bad upload id {upload_id!r}: 1 to 128 letters, digits, '_', '.', '-', starting with a letter"
            " or digit"
        )


def check_range(offset: int, limit: int | None) -> None:
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, not {limit}")


@runtime_checkable
class BlobStore(Protocol):
    capabilities: BlobCapabilities

    async def stat(self, digest: str) -> BlobInfo | None:
        """The blob's size and create time, or None if the store does not hold it."""
        ...

    def read(self, digest: str, offset: int = 0, limit: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from `offset`, at most `limit` of them (None: to the end), in chunks of at most
        the store's chunk size. Raises, at the first iteration, BlobNotFound, or OutOfRange for an offset
        past the end. A read that has started reads the blob it found to the end, whatever happens to it."""
        ...

    async def claim(self, digest: str) -> BlobInfo | None:
        """`stat`, and mark the blob in use from now (its create_time becomes now), so that a sweep's
        `delete(digest, claimed_before=t)` with an earlier `t` leaves it; None if the store does not hold
        it. Who is about to make a record name an existing blob claims it first."""
        ...

    def list(self) -> AsyncIterator[BlobInfo]:
        """Every blob the store holds, in no particular order (blobs added or removed meanwhile may or may
        not be listed)."""
        ...

    async def delete(self, digest: str, *, claimed_before: float | None = None) -> bool:
        """Remove the blob; True if it existed (and was removed). With `claimed_before` (Unix time), only if
        its create_time is earlier, checked atomically against `claim`: a blob claimed meanwhile stays.
        Reads already under way still finish (see `read`)."""
        ...

    async def begin(self, upload_id: str) -> int:
        """Start the upload `upload_id`, or find it again: the committed offset (0 for a new upload)."""
        ...

    async def offset(self, upload_id: str) -> int:
        """Bytes the upload holds: where the next `append` must start. Raises UploadNotFound."""
        ...

    async def append(self, upload_id: str, offset: int, chunk: bytes) -> int:
        """Add `chunk` at `offset`, which must equal the committed offset (else OffsetMismatch, and nothing
        is written); the new committed offset. Raises UploadNotFound."""
        ...

    async def append_all(self, upload_id: str, offset: int, chunks: Sequence[bytes]) -> int:
        """`append` of the chunks one after the other, as one call (one lock, one hand-off where the
        backend can): on a failure, the chunks before the failing one stay appended."""
        ...

    async def commit(self, upload_id: str, digest: str, size: int) -> BlobInfo:
        """Check the upload holds exactly `size` bytes hashing to `digest`, then make the blob visible at
        once and end the upload. SizeMismatch or DigestMismatch: the upload is removed and nothing becomes
        visible. A digest the store already holds: its blob is claimed (see `claim`) and returned, and the
        upload's bytes dropped."""
        ...

    async def abort(self, upload_id: str) -> bool:
        """Remove the upload and its bytes; True if it existed."""
        ...

    async def collect(self, older_than: float) -> int:
        """Remove uploads nobody appended to for more than `older_than` seconds (abandoned ones), and the
        leftovers of operations a crash cut short; how many uploads were removed."""
        ...

    async def ping(self) -> None:
        """Return if the store can be written; raise StoreUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Release what the store holds; safe to call twice."""
        ...
