"""Model-registry tests run on SQLite and Redis records by default, on every backend under `slow`, with a
file blob store.

`stores` holds both roles; `domain` is a ModelsDomain over them; `stub` serves it in this process over gRPC.
Helpers upload bytes the way a client does (header, then chunks).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from microstate.models.v1 import models_pb2 as pb
from microstate.models.v1 import models_pb2_grpc
from microstate.server.kit import wire
from microstate.server.models import MICROSTATE
from microstate.server.models.domain import ModelsDomain
from microstate.server.models.servicer import SERVICE as MICROSTATE_SERVICE
from microstate.server.models.servicer import ModelServicer
from microstate.server.store import Store
from microstate.server.store.blobs import BlobStore, open_blobs
from microstate.server.store.roles import BLOBS, RECORDS, Stores

# The store conformance suite's fixtures: `namespace`, `store_factory`, `store`, and the sampled `backend`.
from tests.conformance.conftest import namespace, store, store_factory  # noqa: F401
from tests.support.inproc import serve_in_process
from tests.support.slice_backends import slice_backend  # noqa: F401

CHUNK = 256 * 1024


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chunked(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def upload_requests(
    model_id: str,
    upload_id: str,
    data: bytes,
    *,
    digest: str | None = None,
    size: int | None = None,
    offset: int = 0,
    chunk: int = CHUNK,
    metadata: dict[str, str] | None = None,
) -> list[pb.UploadRequest]:
    header = pb.UploadHeader(
        model_id=model_id,
        upload_id=upload_id,
        digest=digest or digest_of(data),
        size_bytes=len(data) if size is None else size,
        media_type="application/octet-stream",
        metadata=metadata or {},
        offset=offset,
    )
    return [pb.UploadRequest(header=header)] + [
        pb.UploadRequest(chunk=pb.UploadChunk(data=part)) for part in chunked(data[offset:], chunk)
    ]


@pytest.fixture
async def blobs(tmp_path: Path) -> AsyncIterator[BlobStore]:
    opened = await open_blobs(f"file://{tmp_path / 'blobs'}", "models")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def stores(store: Store, blobs: BlobStore) -> Stores:  # noqa: F811 (the fixture)
    return Stores({RECORDS.name: (RECORDS, store), BLOBS.name: (BLOBS, blobs)})


@pytest.fixture
def domain(stores: Stores) -> ModelsDomain:
    return ModelsDomain(stores.records(), stores.blobs())


@pytest.fixture
async def target(domain: ModelsDomain) -> AsyncIterator[str]:
    """A models server in this process over `domain`'s stores."""

    def attach(server: grpc.aio.Server, _: Stores, *, stopping: object = None) -> None:
        wire.add_service(server, MICROSTATE_SERVICE, ModelServicer(domain))

    microstate = dataclasses.replace(MICROSTATE, attach=attach)
    async with serve_in_process(microstate, Stores({})) as served:
        yield served


@pytest.fixture
async def stub(target: str) -> AsyncIterator[models_pb2_grpc.ModelServiceStub]:
    async with grpc.aio.insecure_channel(target) as channel:
        yield models_pb2_grpc.ModelServiceStub(channel)
