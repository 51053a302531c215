"""ModelsClient and SyncModelsClient against a real in-process server: push, fetch through the
content-addressed cache, resume after cuts and after a process dies, stale serving while the registry is
down, corrupt bytes refused, alias-moved callbacks. One records backend (SQLite): the records backends are
covered by test_service.py; these are about the byte path and the cache."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import stat
import time
from pathlib import Path

import pytest

from microstate.client.errors import DeadlineExceeded, InvalidArgument, Unavailable
from microstate.client.models.v1 import (
    AliasMoved,
    CorruptDownload,
    ModelCache,
    ModelsClient,
    SyncModelsClient,
)
from microstate.server.store.blobs import BlobStore
from tests.conformance.conftest import Backend, sqlite_backend
from tests.models.conftest import digest_of
from tests.support.processes import run_python, until
from tests.support.server_process import free_port

CHUNK = 256 * 1024


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return sqlite_backend(request)


@pytest.fixture
async def models(target: str, tmp_path: Path) -> ModelsClient:
    client = ModelsClient(target, cache=tmp_path / "cache")
    yield client  # type: ignore[misc]
    await client.close()


def write(tmp_path: Path, data: bytes, name: str = "weights.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


class Interrupted(Exception):
    """Raised from a progress callback: the download stops there, as if the process died."""


async def test_push_then_fetch_by_alias_serves_a_read_only_verified_file_once(
    models: ModelsClient, tmp_path: Path
) -> None:
    data = os.urandom(3 * CHUNK + 1234)
    pushed = await models.push("ranker", write(tmp_path, data), metadata={"run": "r1"})
    assert pushed.version.version == 1 and pushed.version.digest == digest_of(data)
    await models.set_alias("ranker", "champion", 1)
    seen: list[tuple[int, int]] = []
    fetched = await models.fetch("ranker@champion", progress=lambda done, total: seen.append((done, total)))
    assert fetched.path.read_bytes() == data
    assert not stat.S_IMODE(fetched.path.stat().st_mode) & 0o222  # read-only
    assert (fetched.version, fetched.downloaded, fetched.stale) == (1, len(data), False)
    assert seen[-1] == (len(data), len(data))
    again = await models.fetch("ranker/1")
    assert again.path == fetched.path and again.downloaded == 0  # a cached digest is never fetched twice
    by_digest = await models.fetch(digest_of(data))
    assert by_digest.downloaded == 0 and by_digest.size == len(data)


async def test_pushing_again_sends_no_bytes(models: ModelsClient, tmp_path: Path) -> None:
    data = os.urandom(CHUNK)
    await models.push("a", write(tmp_path, data))
    same = await models.push("a", write(tmp_path, data))  # the same upload id: the same version
    assert same.version.version == 1
    elsewhere = await models.push("b", write(tmp_path, data))
    assert elsewhere.deduplicated and elsewhere.bytes_received == 0


async def test_a_cut_download_resumes_resending_at_most_one_chunk(
    models: ModelsClient, tmp_path: Path
) -> None:
    data = os.urandom(10 * CHUNK + 77)
    await models.push("m", write(tmp_path, data))
    cut_at = 4 * CHUNK + 5

    def die(done: int, total: int) -> None:
        if done >= cut_at:
            raise Interrupted

    with pytest.raises(Interrupted):
        await models.fetch("m/1", progress=die)
    assert models.cache.blob(digest_of(data)) is None
    held = (models.cache.root / "partial" / digest_of(data)[7:]).stat().st_size
    resumed = await models.fetch("m/1")
    assert resumed.path.read_bytes() == data
    assert resumed.downloaded == len(data) - held
    assert held + resumed.downloaded - len(data) <= CHUNK  # bytes received twice: at most one chunk


async def test_a_download_resumes_after_its_process_was_killed(
    models: ModelsClient, target: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * CHUNK)
    await models.push("m", write(tmp_path, data))
    code = f"""
import asyncio, os, signal, sys
from microstate.client.models.v1 import ModelsClient

def die(done, total):
    if done >= {5 * CHUNK}:
        os.kill(os.getpid(), signal.SIGKILL)  # the lock is held, the partial file half written

async def main():
    async with ModelsClient({target!r}, cache={str(models.cache.root)!r}) as client:
        await client.fetch("m/1", progress=die)

asyncio.run(main())
"""
    status, _, errors = await run_python(code, within=60)
    assert status == -9, errors
    partial = models.cache.root / "partial" / digest_of(data)[7:]
    held = partial.stat().st_size
    assert held >= 5 * CHUNK
    resumed = await asyncio.wait_for(models.fetch("m/1"), 30)  # the dead process's lock is taken over
    assert resumed.path.read_bytes() == data and resumed.downloaded == len(data) - held


async def test_registry_down_serves_a_cached_alias_stale_and_fails_cold_within_the_deadline(
    models: ModelsClient, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    await models.push("m", write(tmp_path, data))
    await models.set_alias("m", "prod", 1)
    await models.fetch("m@prod")
    dead = f"127.0.0.1:{free_port()}"
    async with ModelsClient(dead, cache=models.cache) as offline:
        stale = await offline.fetch("m@prod", timeout=2)
        assert stale.stale and stale.age >= 0 and stale.path.read_bytes() == data
        pinned = await offline.fetch("m/1", timeout=2)  # a version never changes: no one to ask
        assert not pinned.stale and pinned.path == stale.path
    async with ModelsClient(dead, cache=tmp_path / "cold") as cold:
        started = time.monotonic()
        with pytest.raises((Unavailable, DeadlineExceeded)):
            await cold.fetch("m@prod", timeout=2)
        assert time.monotonic() - started < 2 + 1.0


async def test_corrupt_bytes_are_refused_and_never_cached(
    models: ModelsClient, blobs: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK)
    await models.push("m", write(tmp_path, data))
    stored = blobs.root / "blobs" / "sha256" / digest_of(data)[7:9] / digest_of(data)[7:]  # type: ignore[attr-defined]
    flip(stored, 1000)
    with pytest.raises(CorruptDownload):
        await models.fetch("m/1")
    assert models.cache.blob(digest_of(data)) is None
    assert list((models.cache.root / "partial").iterdir()) == []
    flip(stored, 1000)  # repaired: the next fetch downloads afresh
    assert (await models.fetch("m/1")).path.read_bytes() == data


def flip(path: Path, position: int) -> None:
    """Flip one bit of the byte at `position` in place (the file keeps its mode)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o644)
    with open(path, "r+b") as blob:
        blob.seek(position)
        byte = blob.read(1)
        blob.seek(position)
        blob.write(bytes([byte[0] ^ 0x10]))
    path.chmod(mode)


async def test_two_fetches_of_one_digest_download_it_once(models: ModelsClient, tmp_path: Path) -> None:
    data = os.urandom(8 * CHUNK)
    await models.push("m", write(tmp_path, data))
    first, second = await asyncio.gather(models.fetch("m/1"), models.fetch("m/1"))
    assert sorted((first.downloaded, second.downloaded)) == [0, len(data)]


async def test_alias_moves_reach_the_callback(models: ModelsClient, tmp_path: Path) -> None:
    for n in range(2):
        await models.push("m", write(tmp_path, os.urandom(100), f"f{n}"))
    heard: list[AliasMoved] = []
    stop = models.on_alias_moved(heard.append, "m")
    # The watch starts from "now", once its stream is open: move a warm-up alias until a move is heard.
    deadline = time.monotonic() + 10
    for n in itertools.count():
        if heard:
            break
        assert time.monotonic() < deadline, "the alias watch never reported a move"
        await models.set_alias("m", "warm-up", 1 + n % 2)
        await asyncio.sleep(0.05)  # a poll interval: the loop ends on the condition above
    await models.set_alias("m", "canary", 1)
    await models.set_alias("m", "canary", 2)
    await until(lambda: len(canary(heard)) >= 2, within=10, what="two alias moves")
    stop()
    assert canary(heard)[:2] == [("canary", 1), ("canary", 2)]


def canary(heard: list[AliasMoved]) -> list[tuple[str, int]]:
    return [(h.alias, h.version) for h in heard if h.alias == "canary"]


async def test_the_sync_twin_pushes_and_fetches(target: str, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    source = write(tmp_path, data)

    def work() -> tuple[int, bytes, int]:
        with SyncModelsClient(target, cache=tmp_path / "sync-cache") as client:
            pushed = client.push("s", source)
            client.set_alias("s", "live", pushed.version.version)
            fetched = client.fetch("s@live")
            return fetched.version, fetched.path.read_bytes(), client.fetch("s/1").downloaded

    version, body, second = await asyncio.to_thread(work)
    assert (version, body, second) == (1, data, 0)


def aged(path: Path, seconds: float = 60) -> Path:
    """`path`, last modified `seconds` ago: settled, as a file pushed again usually is."""
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def test_a_file_digest_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache")
    path = aged(write(tmp_path, b"a" * 1000))
    assert cache.file_digest(path) == (digest_of(b"a" * 1000), 1000)
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1  # remembered
    mtime_ns = path.stat().st_mtime_ns

    path.write_bytes(b"b" * 1000)  # same size
    os.utime(path, ns=(mtime_ns, mtime_ns))  # and the same mtime: only the ctime tells
    assert cache.file_digest(path) == (digest_of(b"b" * 1000), 1000)
    path.write_bytes(b"c" * 1000)
    assert cache.file_digest(aged(path)) == (digest_of(b"c" * 1000), 1000)

    fresh = write(tmp_path, b"still being written", "fresh.bin")  # modified within the last second
    cache.file_digest(fresh)
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 1


async def test_a_push_uses_the_remembered_digest_and_drops_it_when_the_registry_refuses_it(
    models: ModelsClient, tmp_path: Path
) -> None:
    data = os.urandom(CHUNK)
    path = aged(write(tmp_path, data))
    models.cache.file_digest(path)
    (record,) = (tmp_path / "cache" / "digests").iterdir()
    document = json.loads(record.read_text())
    record.write_text(json.dumps({**document, "digest": digest_of(b"other bytes")}))  # a wrong memory

    with pytest.raises(InvalidArgument) as refused:  # declared without hashing: the registry checks
        await models.push("m", path)

    assert refused.value.reason == "DIGEST_MISMATCH"
    assert not record.exists()
    pushed = await models.push("m", path)  # hashed afresh
    assert pushed.version.digest == digest_of(data)


def test_the_cache_drops_a_blob_that_fails_verification(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    data = b"x" * 100
    digest = digest_of(data)
    partial = cache.partial(digest)
    partial.write(data)
    partial.finish(len(data), cache.blob_path(digest))
    assert cache.verify(digest)
    flip(cache.blob_path(digest), 3)
    assert not cache.verify(digest) and cache.blob(digest) is None
    assert hashlib.sha256(data).hexdigest() == digest[7:]


async def test_the_sync_twin_hears_alias_moves_from_its_thread(
    models: ModelsClient, target: str, tmp_path: Path
) -> None:
    for n in range(2):
        await models.push("t", write(tmp_path, os.urandom(100), f"t{n}"))
    heard: list[AliasMoved] = []
    moves = itertools.count()

    async def moved_and_heard() -> bool:
        # The thread's watch starts from whenever it connects: move until it hears one.
        await models.set_alias("t", "live", 1 + next(moves) % 2)
        return bool(heard)

    with SyncModelsClient(target, cache=tmp_path / "sync") as client:
        stop = client.on_alias_moved(heard.append, "t")
        await until(moved_and_heard, within=20, what="the sync twin's watch to hear a move")
        stop()
    assert (heard[0].model_id, heard[0].alias) == ("t", "live")
