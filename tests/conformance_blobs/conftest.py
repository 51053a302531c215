"""The blob-role conformance suite's fixtures: every test here runs once per blob backend.

`blobs` is an opened blob store on a fresh namespace; `blobs_factory` opens more on the same backend and
namespace (a second server process's view, a reopened store, other options); `blob_backend` says where the
data lives, how to reach a dead location, and how to list upload leftovers in the raw storage.

Adding a backend = one builder below + one line in BLOB_BACKENDS.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pymongo.database import Database

from microstate.server.store.blobs import BlobStore, open_blobs
from microstate.server.store.mongo import DEFAULT_DATABASE
from tests.conformance import conftest as records_suite
from tests.conformance.conftest import Backend
from tests.support.mongo_server import dead_mongo_url, mongo_target

namespace = records_suite.namespace
"""The records suite's fixture: a fresh namespace per test."""


@dataclass(frozen=True)
class BlobBackend(Backend):
    leftovers: Callable[[str], list[str]] = field(kw_only=True)
    """What the raw storage of a namespace holds for uploads (in progress or left over), by some name: after
    a commit, a rejected commit or an abort, nothing of that upload may remain."""


def file_backend(request: pytest.FixtureRequest) -> BlobBackend:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    root = tmp_path / "blobs"

    def leftovers(namespace: str) -> list[str]:
        uploads = root / namespace / "uploads"
        return sorted(str(path.relative_to(uploads)) for path in uploads.rglob("*"))

    return BlobBackend(
        name="file",
        url=f"file://{root}",  # an absolute path, so file:///tmp/...
        dead_url=f"file://{tmp_path / 'no-such-dir' / 'blobs'}",
        leftovers=leftovers,
    )


@contextlib.contextmanager
def mongo_database(url: str) -> Iterator[Database[dict[str, Any]]]:
    """The blob store's database at `url`, seen directly (a synchronous client, closed on exit)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, directConnection=True)
    with client:
        yield client[DEFAULT_DATABASE]


def mongo_backend(request: pytest.FixtureRequest) -> BlobBackend:
    target = mongo_target(request, "secantus")

    def leftovers(namespace: str) -> list[str]:
        """Upload documents, and chunks that no blob or trash entry names."""
        with mongo_database(target.url) as db:
            named = {doc["set"] for doc in db[f"blobs.{namespace}"].find({}, {"set": 1})}
            named |= {doc["_id"] for doc in db[f"blob_trash.{namespace}"].find({}, {"_id": 1})}
            uploads = [f"upload {doc['_id']}" for doc in db[f"blob_uploads.{namespace}"].find()]
            chunks = db[f"blob_chunks.{namespace}"].find({"set": {"$nin": sorted(named)}}, {"_id": 1})
            return sorted(uploads + [f"chunk {doc['_id']}" for doc in chunks])

    return BlobBackend(name="mongo", url=target.url, dead_url=dead_mongo_url(), leftovers=leftovers)


BLOB_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], BlobBackend]] = {
    "file": file_backend,
    "mongo": mongo_backend,
}
_MARKS = {"mongo": [pytest.mark.mongo]}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in BLOB_BACKENDS])
def blob_backend(request: pytest.FixtureRequest) -> BlobBackend:
    return BLOB_BACKENDS[request.param](request)


BlobsFactory = records_suite.Opener[BlobStore]


@pytest.fixture
async def blobs_factory(blob_backend: BlobBackend, namespace: str) -> AsyncIterator[BlobsFactory]:
    """Open another blob store on this test's backend and namespace; all are closed at teardown."""
    async with records_suite.opener(open_blobs, blob_backend.url, namespace) as open_another:
        yield open_another


@pytest.fixture
async def blobs(blobs_factory: BlobsFactory) -> BlobStore:
    return await blobs_factory()
