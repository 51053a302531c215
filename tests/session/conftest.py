"""Session tests run on every store backend (SQLite, Redis, Mongo), as the store conformance suite does.

`domain` is a SessionDomain over a fresh namespace of `backend`, with a server key and a clock the test
controls; `channel` serves it in this process over gRPC; `store_calls` counts what reaches the store.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from microstate.server.session import MICROSTATE, attach_with
from microstate.server.session.domain import SessionDomain
from microstate.server.session.tokens import ServerKey
from microstate.server.store import Store, open_store
from microstate.session.v1 import session_pb2_grpc
from tests.conformance.conftest import BACKENDS, Backend
from tests.support.inproc import serve_in_process

_MARKS = {"redis": [pytest.mark.redis], "mongo": [pytest.mark.mongo], "mongo-external": [pytest.mark.mongo]}
SECOND = 1_000_000_000


class Clock:
    """The server clock, in Unix nanoseconds, moved only by the test."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


class CountingStore:
    """A real store, with every call counted by method name (to prove what did or did not reach it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.capabilities = store.capabilities
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted

    @property
    def writes(self) -> int:
        return self.calls.get("put", 0) + self.calls.get("delete", 0)

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


@pytest.fixture
def namespace() -> str:
    return f"session{uuid.uuid4().hex}"


@pytest.fixture
async def open_session_store(backend: Backend, namespace: str) -> AsyncIterator[Callable[[], Any]]:
    """Open (another) store on this test's backend and namespace; all are closed at teardown."""
    opened: list[Store] = []

    async def open_another() -> Store:
        store = await open_store(backend.url, namespace)
        opened.append(store)
        return store

    yield open_another
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_session_store: Callable[[], Any]) -> Store:
    opened: Store = await open_session_store()
    return opened


@pytest.fixture
def store_calls(store: Store) -> CountingStore:
    return CountingStore(store)


@pytest.fixture
def key() -> ServerKey:
    return ServerKey(secrets.token_bytes(32))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def domain(store_calls: CountingStore, key: ServerKey, clock: Clock) -> SessionDomain:
    return SessionDomain(store_calls, key, clock=clock)  # type: ignore[arg-type]


@pytest.fixture
async def stub(
    store_calls: CountingStore, key: ServerKey, clock: Clock
) -> AsyncIterator[session_pb2_grpc.SessionServiceStub]:
    """A gRPC stub of a session server in this process, over the counted store."""
    microstate = dataclasses.replace(MICROSTATE, attach=attach_with(key, clock=clock))
    async with (
        serve_in_process(microstate, store_calls) as target,  # type: ignore[arg-type]
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield session_pb2_grpc.SessionServiceStub(channel)
