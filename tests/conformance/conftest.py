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


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "sqlite": sqlite_backend,
    "redis": redis_backend,
    # MONGO SLOT: "mongo", and "mongo-external" when MICROSTATE_TEST_MONGO_URL is set
    **conformance_backends(),
}
_MARKS = {
    "redis": [pytest.mark.redis],
    "mongo": [pytest.mark.mongo],
    "mongo-external": [pytest.mark.mongo],
}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests sharing a backend server never see each other's data."""
    return f"conformance{uuid.uuid4().hex}"


class Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=Closable)
S_co = TypeVar("S_co", bound=Closable, covariant=True)


class Factory(Protocol[S_co]):
    async def __call__(self, **options: Any) -> S_co: ...


StoreFactory = Factory[Store]


@asynccontextmanager
async def opening(
    backend: Backend, namespace: str, open_one: Callable[..., Awaitable[S]]
) -> AsyncIterator[Factory[S]]:
    """A factory opening stores with `open_one(url, namespace, **options)` on this backend and namespace,
    closing every one of them on exit (also for the log role's suite)."""
    opened: list[S] = []

    async def open_another(**options: Any) -> S:
        store = await open_one(backend.url, namespace, **options)
        opened.append(store)
        return store

    try:
        yield open_another
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store_factory(backend: Backend, namespace: str) -> AsyncIterator[StoreFactory]:
    """Open another store on this test's backend and namespace; all are closed at teardown."""
    async with opening(backend, namespace, open_store) as open_another:
        yield open_another


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
