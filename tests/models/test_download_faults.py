"""Fault injection on downloads through the SDK cache: cuts at random offsets, bytes flipped on the server,
partial files corrupted or truncated between attempts.

Every fetch ends with the verified file or CorruptDownload, and at the end every cached blob hashes to its
name: no corrupt blob is ever cached. The server reads in 16 KiB chunks here, so cuts fall at many
offsets. 120 runs by default (with test_upload_faults' 200), 1,000 under `slow`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microstate.client.models.v1 import CorruptDownload, ModelsClient
from microstate.server.store.blobs import BlobStore, open_blobs
from tests.conformance.conftest import Backend, sqlite_backend
from tests.models.conftest import digest_of
from tests.models.test_client import Interrupted, flip

FAULTS = ("none", "cut", "flip-server", "flip-partial", "truncate-partial")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return sqlite_backend(request)


@pytest.fixture
async def blobs(tmp_path: Path) -> AsyncIterator[BlobStore]:
    opened = await open_blobs(f"file://{tmp_path / 'blobs'}", "models", chunk_size=16 * 1024)
    try:
        yield opened
    finally:
        await opened.close()


def _server_file(blobs: BlobStore, digest: str) -> Path:
    return blobs.root / "blobs" / "sha256" / digest[7:9] / digest[7:]  # type: ignore[attr-defined, no-any-return]


async def one_run(client: ModelsClient, blobs: BlobStore, rng: random.Random, index: int, tmp: Path) -> str:
    data = rng.randbytes(rng.randrange(1, 300_000))
    source = tmp / f"src-{index}"
    source.write_bytes(data)
    pushed = await client.push("f", source)
    digest, ref = digest_of(data), f"f/{pushed.version.version}"
    fault = rng.choice(FAULTS)
    partial = client.cache.root / "partial" / digest[7:]
    if fault == "flip-server":
        position = rng.randrange(len(data))
        flip(_server_file(blobs, digest), position)
        with pytest.raises(CorruptDownload):
            await client.fetch(ref)
        assert client.cache.blob(digest) is None and not partial.exists(), f"run {index}"
        flip(_server_file(blobs, digest), position)
    elif fault != "none":
        cut_at = rng.randrange(len(data))

        def die(done: int, total: int) -> None:
            if done >= cut_at:
                raise Interrupted

        with contextlib.suppress(Interrupted):
            await client.fetch(ref, progress=die)
        if partial.exists() and partial.stat().st_size and fault == "flip-partial":
            flip(partial, rng.randrange(partial.stat().st_size))
            with pytest.raises(CorruptDownload):
                await client.fetch(ref)
            assert client.cache.blob(digest) is None and not partial.exists(), f"run {index}"
        elif partial.exists() and fault == "truncate-partial":
            os.truncate(partial, rng.randrange(partial.stat().st_size + 1))
    fetched = await client.fetch(ref)
    assert fetched.path.read_bytes() == data, f"run {index} ({fault})"
    return fault


async def _run(target: str, blobs: BlobStore, tmp: Path, runs: int, seed: int) -> None:
    rng = random.Random(seed)
    async with ModelsClient(target, cache=tmp / "cache") as client:
        faults = [await one_run(client, blobs, rng, index, tmp) for index in range(runs)]
        for path in (client.cache.root / "blobs" / "sha256").iterdir():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt cached blob {path}"
    assert set(faults) == set(FAULTS), faults


async def test_faulty_downloads_end_verified_or_refused(
    target: str, blobs: BlobStore, tmp_path: Path
) -> None:
    await _run(target, blobs, tmp_path, 120, seed=13)


@pytest.mark.slow
async def test_a_thousand_faulty_downloads(target: str, blobs: BlobStore, tmp_path: Path) -> None:
    await _run(target, blobs, tmp_path, 1000, seed=int.from_bytes(os.urandom(4)))
