"""The store conformance suite's fixtures: every test here runs once per backend.

`store` is an opened store on a fresh namespace; `store_factory` opens more stores on the same backend and
namespace (a second connection, a reopened store, a store with different options); `backend` describes
where the data lives, how to reach a dead address and, for server backends, how to restart the server.

Adding a backend = one builder below + one line in BACKENDS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from microstate.server.store import Store, open_store
from tests.support.mongo_server import conformance_backends
from tests.support.server_process import free_port


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    """Where this test's data lives."""
    dead_url: str
    """A URL of the same backend that cannot be used: opening or pinging it must fail fast."""
    restart: Callable[[], None] | None = None
    """Restart the backend's server process (blocking); None for embedded backends."""


def sqlite_backend(request: pytest.FixtureRequest) -> Backend:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return Backend(
        name="sqlite",
        url=f"sqlite:///{tmp_path / 'store.db'}",  # an absolute path, so sqlite:////tmp/...
        dead_url=f"sqlite:///{tmp_path / 'no-such-dir' / 'store.db'}",
    )


def redis_backend(request: pytest.FixtureRequest) -> Backend:
    server = request.getfixturevalue("redis_server")
    return Backend(
        name="redis",
        url=server.url,
        dead_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        restart=server.restart,
    )


def redis_cluster_backend(request: pytest.FixtureRequest) -> Backend:
    cluster = request.getfixturevalue("redis_cluster")
    return Backend(
        name="redis-cluster",
        url=cluster.url,
        dead_url=f"redis+cluster://127.0.0.1:{free_port()}",  # nothing listens there
        restart=cluster.restart,
    )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "sqlite": sqlite_backend,
    "redis": redis_backend,
    "redis-cluster": redis_cluster_backend,
    # MONGO SLOT: "mongo", and "mongo-external" when MICROSTATE_TEST_MONGO_URL is set
    **conformance_backends(),
}
_MARKS = {
    "redis": [pytest.mark.redis],
    "redis-cluster": [pytest.mark.redis],
    "mongo": [pytest.mark.mongo],
    "mongo-external": [pytest.mark.mongo],
}


SLICE_BACKENDS = ("sqlite", "redis")
"""Where a slice's own suite runs by default (`slice_backend`); on the other backends, whose store behaviour
the conformance suites prove in every run, only under `slow` (`pytest -m slow` runs every slice on all)."""


def backend_params(*, slice_sample: bool = False) -> list[Any]:
    def marks(name: str) -> list[Any]:
        sampled_out = slice_sample and name not in SLICE_BACKENDS
        return [*_MARKS.get(name, []), *([pytest.mark.slow] if sampled_out else [])]

    return [pytest.param(name, marks=marks(name)) for name in BACKENDS]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests sharing a backend server never see each other's data."""
    return f"conformance{uuid.uuid4().hex}"


def with_query(url: str, query: str) -> str:
    """`url` with `query` ("key=value&...") added to its query string."""
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


class _Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)
S_co = TypeVar("S_co", bound=_Closable, covariant=True)


class Opener(Protocol[S_co]):
    async def __call__(self, query: str = "", **options: Any) -> S_co: ...


StoreFactory = Opener[Store]


@asynccontextmanager
async def opener(open_one: Callable[..., Awaitable[S]], url: str, namespace: str) -> AsyncIterator[Opener[S]]:
    """`open_another(query, **options)`: `open_one(url + query, namespace, **options)`; all it opened are
    closed on exit.

    One per store role: `opener(open_store, ...)` for records, `opener(open_blobs, ...)` for blobs."""
    opened: list[S] = []

    async def open_another(query: str = "", **options: Any) -> S:
        store = await open_one(with_query(url, query), namespace, **options)
        opened.append(store)
        return store

    try:
        yield open_another
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store_factory(backend: Backend, namespace: str) -> AsyncIterator[StoreFactory]:
    """Open another store on this test's backend and namespace, with `query` added to the URL and `options`
    passed in code; all are closed at teardown."""
    async with opener(open_store, backend.url, namespace) as open_another:
        yield open_another


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
