"""The file blob store: a directory, the embedded default of the blob role (as SQLite is for records).

URL: ``file:///absolute/path`` or ``file://relative/path`` (relative to the working directory). The directory
is created if missing, but its parent must exist, so a mistyped path fails at open instead of growing a tree
somewhere. Option (keyword, or in the URL's query): ``chunk_size``, the bytes `read` yields at most at once.

Layout, for namespace ``ns``:

- ``ns/blobs/sha256/<ab>/<hex>``: one read-only file per blob, named by its digest and fanned out by its first
  two hex digits;
- ``ns/uploads/<upload_id>/``: an upload: ``data``, the bytes received so far (its size is the committed
  offset, its mtime the last activity, by the store's clock), and ``meta.json``, whose nonce tells this upload
  from an earlier one of the same id;
- ``ns/uploads/.<step>-<random>``: an upload being created, committed or removed, or a blob being deleted
  unless claimed (`delete(claimed_before=…)`); a crash leaves them for `collect`.

A blob's mtime is the time of its commit or of its last `claim`, whichever is later.

Atomicity. An upload directory appears (renamed from a staging directory) and disappears (renamed to a dot
name, then removed) in one step. `commit` takes the upload out of sight first, so no append or second commit
can slip in; it then checks size and digest, and only then fsyncs the data, renames it into ``blobs/`` (one
atomic step: a reader finds nothing or the whole blob) and fsyncs that directory. A mismatch removes the
hidden upload: nothing visible, nothing left over. Two commits of the same digest write the same bytes: the
second finds the blob and drops its copy (or, racing, renames identical bytes over it).

Concurrency. Operations on one upload queue on a per-upload asyncio lock within the process and on flock(2)
of its data file across processes; each checks after locking that the upload is still the one it opened.
Several processes may share the directory on one machine (or NFSv4, whose locks flock uses).

Flat memory. `append` hashes each chunk as it writes it and keeps the SHA-256 state in memory with the
offset and nonce it covers; `commit` finishes that hash. hashlib cannot export its state, so after a restart
(or when another process appended in between) the upload's bytes are hashed again from the file, once, in
1 MiB reads (about a second per GiB). `read` preads chunks of at most `chunk_size` bytes.

Crashes. The committed offset is exact after a process crash: the kernel holds what was written. Appends
are not fsynced (an fsync per chunk would halve the throughput): after a machine crash the file may be
shorter (the client resends the rest) or, on file systems that expose unwritten blocks, end in zeros, which
commit's digest check refuses; a wrong blob never becomes visible, and a committed blob is durable.

Page cache. Every DROP_BEHIND bytes an upload asks the kernel (posix_fadvise DONTNEED) to start writing its
data back and to drop the pages already written, and a published blob's pages are dropped once fsynced: the
cache does not grow by what uploads write (the store writes far more than it reads back at once; readers
fill the cache again), the commit's fsync finds little left to write, and new writes reuse the pages just
freed. That matters where fresh page-cache pages are dear: on a virtual machine whose memory the host hands
out page by page, writing into new pages ran at ~300 MB/s against ~3 GB/s into recycled ones.

Every file-system call runs in a worker thread, so a slow disk never stalls the event loop; an OSError
becomes StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from microstate.client.models.files import fsync_directory
from microstate.server.store.base import StoreError, StoreUnavailable, check_namespace
from microstate.server.store.blobs._shared import BlobStoreBase
from microstate.server.store.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCapabilities,
    BlobInfo,
    BlobNotFound,
    DigestMismatch,
    OffsetMismatch,
    OutOfRange,
    SizeMismatch,
    UploadNotFound,
    VerificationFailed,
)

DROP_BEHIND: Final = 8 * 1024 * 1024
"""Bytes an upload appends between two drop-behinds (see "Page cache" in the module docstring)."""
REHASH_BLOCK: Final = 1024 * 1024
"""Bytes read at once when an upload's bytes are hashed again from its file."""
LEFTOVER_GRACE: Final = 3600.0
"""Seconds a dot entry of uploads/ (an operation under way) is left alone by `collect`, whatever
`older_than` says: a commit may be re-hashing a large upload."""

_T = TypeVar("_T")
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_QUERY_OPTIONS: Final = frozenset({"chunk_size"})


def directory_path(url: str) -> tuple[Path, dict[str, str]]:
    """The directory of ``file:///absolute/path`` or ``file://relative/path``, and the URL's query options."""
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if parts.scheme.lower() != "file" or not path or parts.fragment:
        raise ValueError(
            f"bad file blob store URL {url!r}: use file:///absolute/path or file://relative/path"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    unknown = set(query) - _QUERY_OPTIONS
    if unknown:
        raise ValueError(f"unknown option(s) in {url!r}: {', '.join(sorted(unknown))}")
    return Path(path), query


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _drop_behind(fd: int, end: int = 0) -> None:
    """Start writing back the first `end` bytes of the file (0: all) and drop those already written from the
    page cache (dirty pages stay until written). Advice only: a no-op where posix_fadvise is missing or the
    file system refuses it, never a failed upload."""
    if _fadvise is not None:
        with contextlib.suppress(OSError):
            _fadvise(fd, 0, end, os.POSIX_FADV_DONTNEED)


_fadvise = getattr(os, "posix_fadvise", None)


def _hash_file(fd: int, size: int) -> Any:
    hasher = hashlib.sha256()
    position = 0
    while position < size:
        block = os.pread(fd, min(REHASH_BLOCK, size - position), position)
        if not block:
            raise StoreError(f"upload data ended at {position} of {size} bytes")
        hasher.update(block)
        position += len(block)
    return hasher


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _remove_leftover(path: Path, older_than: float) -> None:
    """Remove a dot entry of uploads/ last changed before Unix time `older_than` (gone already is fine)."""
    try:
        if path.lstat().st_mtime >= older_than:
            return
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _subdirectories(path: Path) -> list[Path]:
    return [Path(entry.path) for entry in os.scandir(path) if entry.is_dir()]


def _set_times(fd: int, when_ns: int) -> None:
    os.utime(fd, ns=(when_ns, when_ns))


class FileBlobs(BlobStoreBase):
    """A BlobStore in a directory (see the module docstring for layout, atomicity and crash behaviour)."""

    capabilities: BlobCapabilities = BlobCapabilities(durable=True, shared=True)

    def __init__(self, root: Path, *, chunk_size: int, clock: Callable[[], float]) -> None:
        super().__init__()
        self.root = root
        self._blobs = root / "blobs" / "sha256"
        self._uploads = root / "uploads"
        self._chunk_size = chunk_size
        self._clock = clock

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        chunk_size: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> FileBlobs:
        """Open `namespace` in the directory of `url`, creating what is missing but the directory's parent.

        `clock` gives the Unix time of activity and create times (tests move it). An unusable directory
        raises StoreUnavailable here."""
        check_namespace(namespace)
        directory, query = directory_path(url)
        size = chunk_size if chunk_size is not None else int(query.get("chunk_size", DEFAULT_CHUNK_SIZE))
        if size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {size}")
        store = cls(directory / namespace, chunk_size=size, clock=clock)
        await store._run(store._create_layout, directory)
        await store.ping()
        return store

    async def ping(self) -> None:
        await self._run(self._probe)

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""

    # -- the hooks: each runs its file-system work in a worker thread ------------------------------------

    async def _stat(self, hex_digest: str) -> BlobInfo | None:
        return await self._run(self._stat_blob, hex_digest)

    async def _read(self, hex_digest: str, offset: int, limit: int | None) -> AsyncIterator[bytes]:
        fd, size = await self._run(self._open_blob, hex_digest)
        try:  # from here the open file is the blob, even if it is deleted meanwhile
            if offset > size:
                raise OutOfRange(f"sha256:{hex_digest}", offset, size)
            end = size if limit is None else min(size, offset + limit)
            while offset < end:
                chunk = await self._run(os.pread, fd, min(self._chunk_size, end - offset), offset)
                if not chunk:
                    raise StoreError(f"sha256:{hex_digest} ended at {offset} of {size} bytes")
                yield chunk
                offset += len(chunk)
        finally:
            os.close(fd)

    async def _claim(self, hex_digest: str) -> BlobInfo | None:
        return await self._run(self._claim_blob, hex_digest)

    async def _list(self) -> AsyncIterator[BlobInfo]:
        for fan_out in await self._run(_subdirectories, self._blobs):  # one worker call per directory
            for info in await self._run(self._list_blobs, fan_out):
                yield info

    async def _delete(self, hex_digest: str, claimed_before: float | None) -> bool:
        if claimed_before is None:
            return await self._run(self._delete_blob, hex_digest)
        return await self._run(self._delete_unclaimed, hex_digest, claimed_before)

    async def _begin(self, upload_id: str) -> int:
        return await self._run(self._begin_upload, upload_id)

    async def _offset(self, upload_id: str) -> int:
        return await self._run(self._upload_size, upload_id)

    async def _append(self, upload_id: str, offset: int, chunk: bytes) -> int:
        return await self._append_all(upload_id, offset, (chunk,))

    async def _append_all(self, upload_id: str, offset: int, chunks: Sequence[bytes]) -> int:
        return await self._run(self._append_chunks, upload_id, offset, chunks)

    async def _commit(self, upload_id: str, hex_digest: str, size: int) -> BlobInfo:
        return await self._run(self._commit_upload, upload_id, hex_digest, size)

    async def _abort(self, upload_id: str) -> bool:
        return await self._run(self._abort_upload, upload_id)

    async def _collect(self, older_than: float) -> int:
        return await self._run(self._collect_uploads, older_than)

    # -- what runs in worker threads ----------------------------------------------------------------------

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(call, *args)
        except OSError as exc:
            raise StoreUnavailable(f"blob store {self.root} failed: {exc}") from exc

    def _create_layout(self, directory: Path) -> None:
        try:
            directory.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise StoreUnavailable(
                f"blob store directory {directory} cannot be created: {directory.parent} does not exist"
            ) from None
        for path in (self.root, self.root / "blobs", self._blobs, self._uploads):
            path.mkdir(exist_ok=True)

    def _check_layout(self) -> None:
        """Called when something is missing: tell a vanished store (an unmounted volume) from a miss."""
        if not (self._blobs.is_dir() and self._uploads.is_dir()):
            raise StoreUnavailable(f"blob store directory {self.root} is gone (removed, or not mounted?)")

    def _probe(self) -> None:
        self._check_layout()
        probe = self._uploads / f".ping-{uuid.uuid4().hex}"
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, b"ping")
        finally:
            os.close(fd)
            probe.unlink()

    def _blob_path(self, hex_digest: str) -> Path:
        return self._blobs / hex_digest[:2] / hex_digest

    def _stat_blob(self, hex_digest: str) -> BlobInfo | None:
        try:
            status = os.stat(self._blob_path(hex_digest))
        except FileNotFoundError:
            self._check_layout()
            return None
        return BlobInfo(f"sha256:{hex_digest}", status.st_size, status.st_mtime_ns / 1e9)

    def _open_blob(self, hex_digest: str) -> tuple[int, int]:
        try:
            fd = os.open(self._blob_path(hex_digest), os.O_RDONLY)
        except FileNotFoundError:
            self._check_layout()
            raise BlobNotFound(f"sha256:{hex_digest}") from None
        return fd, os.fstat(fd).st_size

    def _claim_blob(self, hex_digest: str) -> BlobInfo | None:
        info = self._touch(self._blob_path(hex_digest))
        if info is None:
            self._check_layout()
        return info

    def _touch(self, path: Path) -> BlobInfo | None:
        """Set the blob's time to now (a claim, see `_delete_unclaimed`); None if there is no blob."""
        now_ns = int(self._clock() * 1e9)
        try:
            os.utime(path, ns=(now_ns, now_ns))
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        return BlobInfo(f"sha256:{path.name}", size, now_ns / 1e9)

    def _list_blobs(self, fan_out: Path) -> list[BlobInfo]:
        found = []
        for entry in os.scandir(fan_out):
            if _HEX_DIGEST.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):  # deleted since scandir saw it
                    status = entry.stat()
                    found.append(BlobInfo(f"sha256:{entry.name}", status.st_size, status.st_mtime_ns / 1e9))
        return found

    def _delete_unclaimed(self, hex_digest: str, claimed_before: float) -> bool:
        """Take the blob out of sight (a rename to a dot entry of uploads/, which `collect` removes should
        we die here), then look at its time: a claim that came before the rename shows there, and the blob
        goes back; a claim after it finds no blob (and its caller uploads the bytes again)."""
        path = self._blob_path(hex_digest)
        hidden = self._uploads / f".unclaimed-{uuid.uuid4().hex}"
        try:
            os.rename(path, hidden)
        except FileNotFoundError:
            self._check_layout()
            return False
        if os.stat(hidden).st_mtime_ns >= int(claimed_before * 1e9):
            os.rename(hidden, path)  # claimed meanwhile (or published again: the same bytes)
            return False
        hidden.unlink()
        fsync_directory(path.parent)
        return True

    def _delete_blob(self, hex_digest: str) -> bool:
        path = self._blob_path(hex_digest)
        try:
            path.unlink()
        except FileNotFoundError:
            self._check_layout()
            return False
        fsync_directory(path.parent)
        return True

    @contextlib.contextmanager
    def _locked_upload(self, upload_id: str, *, wait: bool = True) -> Iterator[int]:
        """The upload's data file, open and flock-ed; UploadNotFound if it is gone once the lock is ours.
        Without `wait`, BlockingIOError if another holds the lock."""
        data = self._uploads / upload_id / "data"
        try:
            fd = os.open(data, os.O_RDWR)
        except FileNotFoundError:
            self._check_layout()
            raise UploadNotFound(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _same_file(fd, data):  # committed, aborted or collected while we waited
                raise UploadNotFound(upload_id)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _nonce(self, upload_id: str) -> str:
        nonce: str = json.loads((self._uploads / upload_id / "meta.json").read_bytes())["nonce"]
        return nonce

    def _hide(self, upload_id: str, step: str) -> Path:
        """Take the upload out of sight in one rename (the caller holds its lock)."""
        hidden = self._uploads / f".{step}-{uuid.uuid4().hex}"
        os.rename(self._uploads / upload_id, hidden)
        os.utime(hidden)  # its age, for collect, counts from now
        self._hashes.drop(upload_id)
        return hidden

    def _begin_upload(self, upload_id: str) -> int:
        if (self._uploads / upload_id).is_dir():
            return self._upload_size(upload_id)
        now_ns = int(self._clock() * 1e9)
        staging = self._uploads / f".begin-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            meta = {"nonce": uuid.uuid4().hex, "create_time": now_ns / 1e9}
            (staging / "meta.json").write_text(json.dumps(meta))
            fd = os.open(staging / "data", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                _set_times(fd, now_ns)
            finally:
                os.close(fd)
            os.rename(staging, self._uploads / upload_id)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # begun meanwhile, by another process
                return self._upload_size(upload_id)
            raise
        return 0

    def _upload_size(self, upload_id: str) -> int:
        try:
            return os.stat(self._uploads / upload_id / "data").st_size
        except FileNotFoundError:
            self._check_layout()
            raise UploadNotFound(upload_id) from None

    def _hasher_at(self, upload_id: str, fd: int, nonce: str, size: int) -> Any:
        """A SHA-256 of the upload's first `size` bytes: the running one if it is current, else from disk."""
        running = self._hashes.get(upload_id, nonce, size)
        return running if running is not None else _hash_file(fd, size)

    def _append_chunks(self, upload_id: str, offset: int, chunks: Sequence[bytes]) -> int:
        with self._locked_upload(upload_id) as fd:
            size = os.fstat(fd).st_size
            if offset != size:
                raise OffsetMismatch(upload_id, offset, size)
            nonce = self._nonce(upload_id)
            hasher = self._hasher_at(upload_id, fd, nonce, size)
            start = size
            for chunk in chunks:
                _write_all(fd, chunk, size)
                hasher.update(chunk)  # only once written: a failed write leaves the hash of what is there
                size += len(chunk)
                self._hashes.put(upload_id, nonce, size, hasher)
            if start // DROP_BEHIND != size // DROP_BEHIND:
                _drop_behind(fd, size)
            _set_times(fd, int(self._clock() * 1e9))
            return size

    def _commit_upload(self, upload_id: str, hex_digest: str, size: int) -> BlobInfo:
        digest = f"sha256:{hex_digest}"
        with self._locked_upload(upload_id) as fd:
            held = os.fstat(fd).st_size
            hasher = self._hasher_at(upload_id, fd, self._nonce(upload_id), held) if held == size else None
            hidden = self._hide(upload_id, "commit")
            try:
                if hasher is None:
                    raise SizeMismatch(upload_id, size, held)
                if hasher.hexdigest() != hex_digest:
                    raise DigestMismatch(upload_id, digest, f"sha256:{hasher.hexdigest()}")
                info = self._publish(fd, hidden / "data", hex_digest, size)
            except VerificationFailed:
                shutil.rmtree(hidden, ignore_errors=True)
                raise
            except OSError:
                if (hidden / "data").exists():  # not published: give the upload back, a retry may work
                    os.rename(hidden, self._uploads / upload_id)
                else:
                    shutil.rmtree(hidden, ignore_errors=True)
                raise
        shutil.rmtree(hidden, ignore_errors=True)
        return info

    def _publish(self, fd: int, data: Path, hex_digest: str, size: int) -> BlobInfo:
        """Make the verified upload data the blob: durable first, then visible in one rename."""
        path = self._blob_path(hex_digest)
        held = self._touch(path)  # claimed, as the version about to name it may be the only one
        if held is not None:  # already held: these are the same bytes
            return held
        now_ns = int(self._clock() * 1e9)
        _set_times(fd, now_ns)
        os.fchmod(fd, 0o444)
        os.fsync(fd)
        _drop_behind(fd)
        try:
            path.parent.mkdir()
            fsync_directory(path.parent.parent)
        except FileExistsError:
            pass
        os.rename(data, path)
        fsync_directory(path.parent)
        return BlobInfo(f"sha256:{hex_digest}", size, now_ns / 1e9)

    def _abort_upload(self, upload_id: str) -> bool:
        try:
            with self._locked_upload(upload_id):
                hidden = self._hide(upload_id, "abort")
        except UploadNotFound:
            return False
        shutil.rmtree(hidden, ignore_errors=True)
        return True

    def _collect_uploads(self, older_than: float) -> int:
        cutoff_ns = int((self._clock() - older_than) * 1e9)
        leftover_cutoff = time.time() - max(older_than, LEFTOVER_GRACE)
        removed = 0
        for entry in os.scandir(self._uploads):
            if not entry.name.startswith("."):
                removed += self._collect_upload(entry.name, cutoff_ns)
            else:
                _remove_leftover(Path(entry.path), leftover_cutoff)
        return removed

    def _collect_upload(self, upload_id: str, cutoff_ns: int) -> int:
        try:
            with self._locked_upload(upload_id, wait=False) as fd:
                if os.fstat(fd).st_mtime_ns >= cutoff_ns:
                    return 0
                hidden = self._hide(upload_id, "collect")
        except (UploadNotFound, BlockingIOError):  # gone, or in use right now
            return 0
        shutil.rmtree(hidden, ignore_errors=True)
        return 1
