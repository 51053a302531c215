"""Fault injection on uploads: bytes flipped, streams truncated, streams cut at random offsets and resumed.

Every run ends verified (the version reads back the bytes sent, under the digest declared) or with a typed
error (INVALID_ARGUMENT DIGEST_MISMATCH / SIZE_MISMATCH) that left nothing visible; at the end every blob
in the store hashes to its name and versions are numbered without gaps. 200 runs by default, 1,000 under
`slow`; one SQLite records store (the faults are in the byte path, not the records backend).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from microstate.models.v1 import models_pb2 as pb
from microstate.models.v1.models_pb2_grpc import ModelServiceStub
from microstate.server.store.blobs import BlobStore
from tests.conformance.conftest import Backend, sqlite_backend
from tests.models.conftest import digest_of, upload_requests
from tests.models.test_service import reason

FAULTS = ("none", "flip", "truncate", "cut", "cut-then-flip")
MAX_RESUMES = 20


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return sqlite_backend(request)


async def _cut(stub: ModelServiceStub, requests: list[pb.UploadRequest], keep: int) -> None:
    """Send the header and `keep` chunks, then cut the stream (the client goes away mid-upload)."""
    sent = asyncio.Event()

    async def part() -> AsyncIterator[pb.UploadRequest]:
        for request in requests[: 1 + keep]:
            yield request
        sent.set()
        await asyncio.Event().wait()

    call = stub.Upload(part())
    await sent.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def _resume(
    stub: ModelServiceStub, model_id: str, upload_id: str, data: bytes, digest: str, chunk: int
) -> pb.UploadResponse:
    """Continue an upload from what the server holds, as the SDK does, until it answers."""
    for _ in range(MAX_RESUMES):
        status = await stub.QueryUpload(pb.QueryUploadRequest(upload_id=upload_id))
        requests = upload_requests(
            model_id, upload_id, data, digest=digest, offset=status.committed_offset, chunk=chunk
        )
        try:
            response: pb.UploadResponse = await stub.Upload(iter(requests))
            return response
        except grpc.aio.AioRpcError as err:
            # the cut stream's last append may land after the query: ask again
            if err.code() is not grpc.StatusCode.FAILED_PRECONDITION or reason(err) != "OFFSET_MISMATCH":
                raise
    raise AssertionError(f"upload {upload_id} did not complete in {MAX_RESUMES} resumes")


async def one_run(stub: ModelServiceStub, rng: random.Random, index: int) -> tuple[str, bool]:
    data = rng.randbytes(rng.randrange(0, 200_000))
    chunk = rng.choice((8_192, 32_768, 65_536))
    fault = rng.choice(FAULTS)
    model_id, upload_id, digest = f"m{index % 7}", f"run-{index}", digest_of(data)
    sent = data
    if fault in ("flip", "cut-then-flip") and data:
        position = rng.randrange(len(data))
        sent = data[:position] + bytes([data[position] ^ 1 << rng.randrange(8)]) + data[position + 1 :]
    if fault == "truncate":
        sent = data[: rng.randrange(len(data))] if data else b""
        fault = "truncate" if len(sent) < len(data) else "none"
    try:
        if fault.startswith("cut"):
            chunks = -(-len(data) // chunk)
            await _cut(
                stub, upload_requests(model_id, upload_id, data, chunk=chunk), rng.randrange(chunks + 1)
            )
            status = await stub.QueryUpload(pb.QueryUploadRequest(upload_id=upload_id, digest=digest))
            assert status.state != pb.VERSION_STATE_READY, f"run {index}: a cut upload became a version"
            assert not status.digest_present or not data, f"run {index}: a cut upload became a blob"
            made = await _resume(stub, model_id, upload_id, sent, digest, chunk)
        else:
            requests = upload_requests(model_id, upload_id, sent, digest=digest, size=len(data), chunk=chunk)
            made = await stub.Upload(iter(requests))
    except grpc.aio.AioRpcError as err:
        assert sent != data, f"run {index} ({fault}): correct bytes refused: {err}"
        status = await stub.QueryUpload(pb.QueryUploadRequest(upload_id=upload_id, digest=digest_of(sent)))
        assert not status.digest_present or sent == b"", f"run {index}: the wrong bytes became a blob"
        if fault == "truncate":  # kept, out of sight, for a resume
            assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_INCOMPLETE")
            assert status.state == pb.VERSION_STATE_UPLOADING, f"run {index}: {status}"
            assert status.committed_offset == len(sent), f"run {index}: {status}"
            await stub.Upload(iter(upload_requests(model_id, upload_id, data, offset=len(sent), chunk=chunk)))
            return fault, True
        assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "DIGEST_MISMATCH"), f"{err}"
        assert status.state == pb.VERSION_STATE_UNSPECIFIED, f"run {index}: the failed upload remains"
        return fault, False
    # A cut-then-flip run may have sent the flipped byte before the cut: then it must fail, never pass.
    assert made.version.digest == digest and made.version.size_bytes == len(data), f"run {index}"
    responses = [r async for r in stub.ReadBlob(pb.ReadBlobRequest(ref=f"{model_id}/{made.version.version}"))]
    assert b"".join(r.data for r in responses[1:]) == data, f"run {index} ({fault}): wrong bytes read back"
    return fault, True


def _check_blob_files(root: Path) -> int:
    """Every blob file hashes to its name; no upload is left behind by a finished run."""
    count = 0
    for path in (root / "blobs" / "sha256").glob("*/*"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt blob {path}"
        assert not os.access(path, os.W_OK) or os.geteuid() == 0, f"{path} is writable"
        count += 1
    leftovers = [p for p in (root / "uploads").iterdir() if not p.name.startswith(".")]
    assert leftovers == [], f"uploads left over: {leftovers}"
    return count


async def _run(stub: ModelServiceStub, blobs: BlobStore, runs: int, seed: int) -> None:
    rng = random.Random(seed)
    outcomes = [await one_run(stub, rng, index) for index in range(runs)]
    tally = {fault: sum(1 for f, ok in outcomes if f == fault) for fault in FAULTS}
    assert all(tally[f] for f in ("none", "flip", "cut")), tally  # every kind of fault was tried
    assert any(ok for _, ok in outcomes) and not all(ok for _, ok in outcomes)
    _check_blob_files(blobs.root)  # type: ignore[attr-defined]
    for model in range(7):
        listed = await stub.ListVersions(pb.ListVersionsRequest(model_id=f"m{model}", page_size=1000))
        assert [v.version for v in listed.versions] == list(range(1, len(listed.versions) + 1))


async def test_two_hundred_faulty_uploads_end_verified_or_refused(
    stub: ModelServiceStub, blobs: BlobStore
) -> None:
    await _run(stub, blobs, 200, seed=13)


@pytest.mark.slow
async def test_a_thousand_faulty_uploads_end_verified_or_refused(
    stub: ModelServiceStub, blobs: BlobStore
) -> None:
    await _run(stub, blobs, 1000, seed=int.from_bytes(os.urandom(4)))
