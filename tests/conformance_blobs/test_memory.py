"""Conformance: memory stays flat whatever the blob's size, uploading, resuming, committing and reading.

A child process uploads a blob generated on the fly (in 1 MiB chunks, hashed as it goes), switches to a
second store object half-way (as a restarted server would: the running hash is rebuilt from what the store
holds), commits it and reads it back. It reports how far its peak RSS (VmHWM, reset after a warm-up) rose
above its RSS before the transfer.
"""

from __future__ import annotations

import json

import pytest

from tests.conformance.waiting import DEADLINE
from tests.conformance_blobs.conftest import BlobBackend
from tests.support.processes import run_python

MIB = 1024 * 1024
GROWTH_BOUND = 16 * MIB
"""What peak RSS may rise by during a transfer: a few 1 MiB chunks in flight, and slack for the allocator."""

_TRANSFER = """
import asyncio, hashlib, json, os, sys
from pathlib import Path
from microstate.server.store.blobs import open_blobs

CHUNK = 1024 * 1024
BLOCK = os.urandom(CHUNK)

def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)

def chunk(index: int, size: int) -> bytes:
    return index.to_bytes(8, "big") + BLOCK[8:size]  # every chunk differs, none is kept

async def transfer(url: str, namespace: str, upload_id: str, size: int) -> None:
    store = await open_blobs(url, namespace)
    hasher = hashlib.sha256()
    offset = await store.begin(upload_id)
    restarted = False
    while offset < size:
        if not restarted and offset >= size // 2:  # a restart half-way: the running hash is rebuilt
            await store.close()
            store = await open_blobs(url, namespace)
            restarted = True
        data = chunk(offset // CHUNK, min(CHUNK, size - offset))
        hasher.update(data)
        offset = await store.append(upload_id, offset, data)
    digest = "sha256:" + hasher.hexdigest()
    info = await store.commit(upload_id, digest, size)
    assert info.size == size
    check, total = hashlib.sha256(), 0
    async for part in store.read(digest):
        check.update(part)
        total += len(part)
    assert (total, "sha256:" + check.hexdigest()) == (size, digest)
    await store.close()

async def main() -> None:
    url, namespace, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    await transfer(url, namespace, "warm-up", 4 * CHUNK)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = status("VmRSS")
    await transfer(url, namespace, "measured", size)
    print(json.dumps({"before": before, "peak": status("VmHWM")}))

asyncio.run(main())
"""


async def _peak_growth(blob_backend: BlobBackend, namespace: str, size: int) -> int:
    status, output, errors = await run_python(
        _TRANSFER, blob_backend.url, namespace, str(size), within=DEADLINE * 60
    )
    assert status == 0, errors
    report = json.loads(output)
    return int(report["peak"]) - int(report["before"])


@pytest.mark.parametrize("size", [64 * MIB, pytest.param(256 * MIB, marks=pytest.mark.slow)])
async def test_peak_memory_does_not_grow_with_the_blob(
    blob_backend: BlobBackend, namespace: str, size: int
) -> None:
    growth = await _peak_growth(blob_backend, namespace, size)

    assert growth < GROWTH_BOUND, f"peak RSS rose by {growth / MIB:.1f} MiB for a {size // MIB} MiB blob"
