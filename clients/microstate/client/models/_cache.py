"""The on-disk cache of model blobs: content-addressed, verified, shared by every process of a user.

Layout under the cache root (default ``$MICROSTATE_MODELS_CACHE``, else ``~/.cache/microstate/models``):

- ``blobs/sha256/<hex>``: a verified blob, read-only (0444), never rewritten; its name is its digest, so a
  cached digest is never fetched twice;
- ``refs/<model>/@<alias>`` and ``refs/<model>/<n>``: what a ref resolved to (digest, size, version) and
  when, written atomically; what `fetch` serves, marked stale, when the registry cannot be asked;
- ``partial/<hex>``: a download under way: every byte received so far, in order; a later download of the
  digest (after a cut, or in a new process) hashes this prefix again and continues after it;
- ``digests/<dev>-<inode>``: the digest of a local file an upload hashed, with the size, mtime and ctime it
  had, so that pushing it again unchanged (a cut push continued by a new process, the same file to another
  registry) does not read and hash it all again first;
- ``locks/<hex>``: flock(2)-ed while a process downloads the digest. The kernel releases the lock when its
  holder dies however it dies, so a dead process's lock is taken over at once, and a live one's never.
  (flock is per open file: two downloads in one process exclude each other too. On NFS, flock maps to
  POSIX byte-range locks, which NFSv4 honours across hosts.)

A blob appears by a rename of its partial file, after an fsync and only once its SHA-256 matches the
digest: a reader finds the whole verified blob or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from microstate.client.errors import DataLoss
from microstate.client.models.files import fsync_directory

ENV_CACHE: Final = "MICROSTATE_MODELS_CACHE"
REHASH_BLOCK: Final = 1024 * 1024
SETTLED_NS: Final = 1_000_000_000
"""A file last modified this recently (ns) before it was hashed may still change within the same mtime: its
digest is not remembered."""
SYNC_EVERY: Final = 8 * 1024 * 1024
"""Bytes written between two fdatasyncs started in the background during a download, so the fsync before
the rename finds little left to write (bench P5: a 64 MiB fetch ~630 -> ~750 MiB/s)."""


def default_root() -> Path:
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "microstate" / "models"


class CorruptDownload(DataLoss):
    """The bytes received do not hash to the digest the registry named (or are not its size): they were
    dropped, nothing was cached. Fetching again downloads them afresh."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class CachedRef:
    """What a ref resolved to when it was last asked (refs/)."""

    digest: str
    size: int
    model_id: str
    version: int
    resolved_at: float
    """Unix time of the registry's answer."""


def _hex(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or not all(c in "0123456789abcdef" for c in hex_digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hex_digest


class BlobLock:
    """The cross-process lock of one digest's download (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking; the kernel holds the lock
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


class Partial:
    """A download being written to partial/<hex>: what it holds, hashed, and where it continues."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path = path
        self.digest = digest
        self._hasher: Any = hashlib.sha256()
        self._file = open(path, "ab+")  # noqa: SIM115 - kept open across the download, closed by close()
        self._file.seek(0)
        while block := self._file.read(REHASH_BLOCK):  # what an earlier attempt or process left
            self._hasher.update(block)
        self.offset = self._synced = self._file.tell()
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="microstate-models-sync")
        self._syncing: Future[None] | None = None
        self.received = 0
        """Bytes this object wrote (not the ones it found)."""

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hasher.update(data)
        self.offset += len(data)
        self.received += len(data)
        if self.offset - self._synced >= SYNC_EVERY and (self._syncing is None or self._syncing.done()):
            self._synced = self.offset
            self._syncing = self._flusher.submit(os.fdatasync, self._file.fileno())

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if self._syncing is not None:
            with contextlib.suppress(OSError):
                self._syncing.result()
        self._flusher.shutdown()
        self._file.close()

    def finish(self, size: int, target: Path) -> None:
        """Verify size and digest, then make the blob visible (read-only) at `target`; CorruptDownload
        (and the partial file removed) if they differ."""
        actual = "sha256:" + self._hasher.hexdigest()
        if self.offset != size or actual != self.digest:
            self.discard()
            raise CorruptDownload(
                f"the download of {self.digest} gave {self.offset} bytes hashing to {actual}, not {size}"
                " bytes hashing to the digest; nothing was cached"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), 0o444)
        self.close()
        os.rename(self.path, target)
        fsync_directory(target.parent)


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, prefix=".new-") as temp:
        json.dump(document, temp)
    os.replace(temp.name, path)


def file_digest(path: Path) -> tuple[str, int]:
    """("sha256:<hex>", size) of a file, read in 1 MiB blocks into one buffer (a new 1 MiB block per read
    costs fresh pages each time)."""
    hasher, size = hashlib.sha256(), 0
    block = bytearray(REHASH_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as source:
        while count := source.readinto(block):
            hasher.update(view[:count])
            size += count
    return "sha256:" + hasher.hexdigest(), size


def _file_state(status: os.stat_result) -> list[int]:
    """What must not change for a remembered digest to hold: a write changes size, mtime or ctime (and
    ctime cannot be set back)."""
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns]


class ModelCache:
    """A cache root (see the module docstring). Every method is blocking file I/O, short but for
    `file_digest` of a file not seen before and `verify`."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        for name in ("blobs/sha256", "refs", "partial", "locks", "digests"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def file_digest(self, path: Path) -> tuple[str, int]:
        """("sha256:<hex>", size) of a local file: remembered if the file has not changed since it was
        last hashed here, else hashed (and remembered, unless it changed while being hashed or in the last
        second, when a write could still land within the same timestamp)."""
        before = os.stat(path)
        record = self.root / "digests" / f"{before.st_dev}-{before.st_ino}"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            known = json.loads(record.read_text())
            if known["state"] == _file_state(before):
                return str(known["digest"]), before.st_size
        started = time.time_ns()
        digest, size = file_digest(path)
        after = os.stat(path)
        if _file_state(after) == _file_state(before) and after.st_mtime_ns < started - SETTLED_NS:
            with contextlib.suppress(OSError):  # only a shortcut for next time
                _write_atomically(record, {"digest": digest, "state": _file_state(after)})
        return digest, size

    def forget_file_digest(self, path: Path) -> None:
        """Drop what `file_digest` remembers of `path` (the registry found its bytes differ)."""
        with contextlib.suppress(OSError):
            status = os.stat(path)
            (self.root / "digests" / f"{status.st_dev}-{status.st_ino}").unlink()

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def blob(self, digest: str) -> Path | None:
        """The cached blob of `digest`, or None."""
        path = self.blob_path(digest)
        return path if path.is_file() else None

    def lock(self, digest: str) -> BlobLock:
        return BlobLock(self.root / "locks" / _hex(digest))

    def partial(self, digest: str) -> Partial:
        """The partial download of `digest` (hold its lock first)."""
        return Partial(self.root / "partial" / _hex(digest), digest)

    def verify(self, digest: str) -> bool:
        """Hash the cached blob again; a blob that does not match is removed (False)."""
        path = self.blob(digest)
        if path is None:
            return False
        if file_digest(path)[0] == digest:
            return True
        path.unlink()
        return False

    def _ref_path(self, model_id: str, name: str) -> Path:
        return self.root / "refs" / model_id / name

    def remember(self, ref_name: tuple[str, str], cached: CachedRef) -> None:
        """Record what (model, "@alias" or "<n>") resolved to, atomically."""
        path = self._ref_path(*ref_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "digest": cached.digest,
            "size": cached.size,
            "model_id": cached.model_id,
            "version": cached.version,
            "resolved_at": cached.resolved_at,
        }
        _write_atomically(path, document)

    def recall(self, ref_name: tuple[str, str]) -> CachedRef | None:
        """What (model, "@alias" or "<n>") last resolved to, or None."""
        try:
            document = json.loads(self._ref_path(*ref_name).read_text())
            return CachedRef(
                str(document["digest"]),
                int(document["size"]),
                str(document["model_id"]),
                int(document["version"]),
                float(document["resolved_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def now() -> float:
        return time.time()
