"""The registry over gRPC on every records backend: versions, refs, aliases, uploads, reads, watch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microstate.models.v1 import models_pb2 as pb
from microstate.models.v1.models_pb2_grpc import ModelServiceStub
from microstate.server.models.domain import ModelsDomain
from microstate.server.models.model import UploadData
from microstate.server.store.blobs import open_blobs
from microstate.server.store.roles import Stores
from tests.models.conftest import digest_of, upload_requests

Stub = ModelServiceStub


def reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


async def upload(
    stub: Stub, model_id: str, data: bytes, upload_id: str, **kwargs: object
) -> pb.UploadResponse:
    response: pb.UploadResponse = await stub.Upload(
        iter(upload_requests(model_id, upload_id, data, **kwargs))
    )
    return response


async def read_all(
    stub: Stub, ref: str, offset: int = 0, limit: int = 0
) -> tuple[pb.ReadBlobResponse, bytes]:
    responses = [r async for r in stub.ReadBlob(pb.ReadBlobRequest(ref=ref, offset=offset, limit=limit))]
    return responses[0], b"".join(r.data for r in responses[1:])


async def test_upload_makes_gapless_versions_and_reads_them_back(stub: Stub) -> None:
    blobs = [os.urandom(n) for n in (0, 1, 600_000)]
    for number, data in enumerate(blobs, start=1):
        made = await upload(stub, "ranker", data, f"up-{number}")
        assert made.version.version == number
        assert made.version.digest == digest_of(data)
        assert made.version.size_bytes == len(data)
        assert made.version.state == pb.VERSION_STATE_READY
        assert made.bytes_received == len(data)
        first, body = await read_all(stub, f"ranker/{number}")
        assert (first.digest, first.size_bytes, first.version.version) == (digest_of(data), len(data), number)
        assert body == data
    model = await stub.GetModel(pb.GetModelRequest(model_id="ranker"))
    assert model.latest_version == 3
    listed = await stub.ListVersions(pb.ListVersionsRequest(model_id="ranker", page_size=2))
    assert [v.version for v in listed.versions] == [1, 2]
    rest = await stub.ListVersions(
        pb.ListVersionsRequest(model_id="ranker", page_size=2, page_token=listed.next_page_token)
    )
    assert [v.version for v in rest.versions] == [3] and not rest.next_page_token


async def test_reads_a_range_and_refuses_an_offset_past_the_end(stub: Stub) -> None:
    data = os.urandom(700_000)
    await upload(stub, "m", data, "u1")
    _, body = await read_all(stub, digest_of(data), offset=300_000, limit=350_000)
    assert body == data[300_000:650_000]
    _, empty = await read_all(stub, "m/1", offset=len(data))
    assert empty == b""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(stub, "m/1", offset=len(data) + 1)
    assert caught.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert reason(caught.value) == "OFFSET_OUT_OF_RANGE"


async def test_a_digest_mismatch_leaves_nothing_visible(stub: Stub) -> None:
    data = os.urandom(300_000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(stub, "m", data, "bad", digest=digest_of(data + b"x"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "DIGEST_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await read_all(stub, digest_of(data))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    status = await stub.QueryUpload(pb.QueryUploadRequest(upload_id="bad", digest=digest_of(data)))
    assert status.state == pb.VERSION_STATE_UNSPECIFIED and not status.digest_present
    # the same upload id starts again from zero
    made = await upload(stub, "m", data, "bad")
    assert made.version.version == 1


async def test_a_cut_upload_resumes_from_the_committed_offset(stub: Stub) -> None:
    data = os.urandom(1_000_000)
    requests = upload_requests("m", "cut", data, chunk=100_000)
    sent = asyncio.Event()

    async def first_part() -> object:
        for request in requests[:4]:  # header and 3 chunks, then the stream hangs until cancelled
            yield request
        sent.set()
        await asyncio.Event().wait()

    call = stub.Upload(first_part())
    await sent.wait()
    status = await _until_offset(stub, "cut", 300_000)
    call.cancel()
    assert status.state == pb.VERSION_STATE_UPLOADING
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await upload(stub, "m", data, "cut", offset=0)
    assert wrong.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason(wrong.value) == "OFFSET_MISMATCH"
    made = await upload(stub, "m", data, "cut", offset=300_000)
    assert made.bytes_received == 700_000
    _, body = await read_all(stub, "m/1")
    assert body == data
    again = await upload(stub, "m", data, "cut", offset=0)  # a retry after success: the same version
    assert again.version.version == 1 and again.bytes_received == 0


async def _until_offset(stub: Stub, upload_id: str, offset: int) -> pb.UploadStatus:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status: pb.UploadStatus = await stub.QueryUpload(pb.QueryUploadRequest(upload_id=upload_id))
        if status.committed_offset >= offset or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.01)  # polling the condition, with a deadline


async def test_a_held_digest_uploads_with_zero_bytes(stub: Stub) -> None:
    data = os.urandom(500_000)
    await upload(stub, "a", data, "one")
    status = await stub.QueryUpload(pb.QueryUploadRequest(upload_id="two", digest=digest_of(data)))
    assert status.digest_present
    header_only = upload_requests("b", "two", data)[:1]
    made = await stub.Upload(iter(header_only))
    assert made.deduplicated and made.bytes_received == 0
    assert (made.version.model_id, made.version.version) == ("b", 1)


async def test_aliases_move_by_etag_and_keep_their_history(stub: Stub) -> None:
    for n in range(3):
        await upload(stub, "r", bytes([n]) * 10, f"u{n}")
    created = await stub.SetAlias(
        pb.SetAliasRequest(model_id="r", alias="champion", version=1, etag="absent")
    )
    moved = await stub.SetAlias(
        pb.SetAliasRequest(model_id="r", alias="champion", version=2, etag=created.etag)
    )
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.SetAlias(pb.SetAliasRequest(model_id="r", alias="champion", version=3, etag=created.etag))
    assert stale.value.code() is grpc.StatusCode.ABORTED
    assert [(m.from_version, m.to_version) for m in moved.history] == [(0, 1), (1, 2)]
    resolved = await stub.ResolveRef(pb.ResolveRefRequest(ref="r@champion"))
    assert resolved.version == 2
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.SetAlias(pb.SetAliasRequest(model_id="r", alias="champion", version=9))
    assert reason(missing.value) == "VERSION_NOT_FOUND"
    await stub.DeleteAlias(pb.DeleteAliasRequest(model_id="r", alias="champion", etag=moved.etag))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.ResolveRef(pb.ResolveRefRequest(ref="r@champion"))
    assert reason(gone.value) == "ALIAS_NOT_FOUND"


async def test_sixty_four_concurrent_movers_lose_no_update(stub: Stub) -> None:
    for n in range(4):
        await upload(stub, "r", bytes([n]) * 10, f"u{n}")
    await stub.SetAlias(pb.SetAliasRequest(model_id="r", alias="live", version=1))
    successes: list[tuple[int, int]] = []

    async def mover(index: int) -> None:
        while True:
            current = await stub.GetAlias(pb.GetAliasRequest(model_id="r", alias="live"))
            target = current.version % 4 + 1
            try:
                await stub.SetAlias(
                    pb.SetAliasRequest(model_id="r", alias="live", version=target, etag=current.etag)
                )
            except grpc.aio.AioRpcError as err:
                assert err.code() is grpc.StatusCode.ABORTED
                continue
            successes.append((current.version, target))
            return

    await asyncio.gather(*(mover(i) for i in range(64)))
    final = await stub.GetAlias(pb.GetAliasRequest(model_id="r", alias="live"))
    moves = [(m.from_version, m.to_version) for m in final.history]
    assert moves[1:] == successes  # every acknowledged move, in order, none lost
    assert final.version == successes[-1][1]


async def test_watch_reports_versions_and_alias_moves_and_resumes(stub: Stub) -> None:
    watch = stub.WatchModels(pb.WatchModelsRequest(model_id="w"))
    await watch.initial_metadata()
    await upload(stub, "w", b"abc", "w1")
    await stub.SetAlias(pb.SetAliasRequest(model_id="w", alias="canary", version=1))
    await upload(stub, "other", b"zzz", "o1")
    await upload(stub, "w", b"def", "w2")
    events = []
    async for event in watch:
        events.append(event)
        if len(events) == 3:
            break
    watch.cancel()
    assert [e.event_type for e in events] == [
        pb.EVENT_TYPE_VERSION_CREATED,
        pb.EVENT_TYPE_ALIAS_MOVED,
        pb.EVENT_TYPE_VERSION_CREATED,
    ]
    assert events[1].alias.alias == "canary" and events[2].version.version == 2
    resumed = stub.WatchModels(pb.WatchModelsRequest(model_id="w", resume_token=events[0].resume_token))
    async for event in resumed:
        assert event.event_type == pb.EVENT_TYPE_ALIAS_MOVED
        break
    resumed.cancel()


@pytest.mark.parametrize(
    ("ref", "field_reason"),
    [
        ("", "INVALID_REF"),
        ("Bad/1", "INVALID_MODEL_ID"),
        ("m@1x", "INVALID_ALIAS"),
        ("sha256:xyz", "INVALID_DIGEST"),
    ],
)
async def test_malformed_refs_are_invalid_argument(stub: Stub, ref: str, field_reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(stub, ref)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == field_reason


async def test_abandoned_uploads_are_collected(stores: Stores, tmp_path: Path) -> None:
    now = [1_000_000.0]
    blobs = await open_blobs(f"file://{tmp_path / 'collected'}", "models", clock=lambda: now[0])
    domain = ModelsDomain(stores.records(), blobs, upload_ttl=3600)
    data = os.urandom(1000)

    async def half() -> AsyncIterator[bytes]:
        yield data[:500]
        raise asyncio.CancelledError  # the stream is cut here

    declared = UploadData("m", digest_of(data), len(data))
    with pytest.raises(asyncio.CancelledError):
        await domain.upload("abandoned", declared, 0, half())
    assert (await domain.query_upload("abandoned", "")).committed_offset == 500
    now[0] += 3599
    await domain.collect()
    assert (await domain.query_upload("abandoned", "")).under_way
    now[0] += 2
    await domain.collect()
    state = await domain.query_upload("abandoned", "")
    assert not state.under_way and state.committed_offset == 0
    await blobs.close()


async def test_a_stale_etag_names_the_resource_as_the_contract_does(stub: Stub) -> None:
    await upload(stub, "e", b"abc", "e1")
    await stub.SetAlias(pb.SetAliasRequest(model_id="e", alias="prod", version=1))
    for call in (
        stub.SetAlias(pb.SetAliasRequest(model_id="e", alias="prod", version=1, etag='W/"0"')),
        stub.DeleteAlias(pb.DeleteAliasRequest(model_id="e", alias="prod", etag='W/"0"')),
        stub.UpdateModel(pb.UpdateModelRequest(model_id="e", description="x", etag='W/"0"')),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.ABORTED
        status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
        assert status is not None
        failure = error_details_pb2.PreconditionFailure()
        assert any(detail.Unpack(failure) for detail in status.details)
        assert failure.violations[0].subject in ("models/e/aliases/prod", "models/e")
