"""Session tests run on SQLite and Redis by default, on every store backend under `slow`, with the store
conformance suite's fixtures (`backend`, `store`, `store_factory` for more connections to the same namespace).

`domain` is a SessionDomain over `store`, with a server key and a clock the test controls; `stub` serves it
in this process over gRPC; `store_calls` counts what reaches the store.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from microstate.server.session import MICROSTATE, attach_with
from microstate.server.session.domain import SessionDomain
from microstate.server.session.tokens import ServerKey
from microstate.server.store import Store
from microstate.session.v1 import session_pb2_grpc

# The store conformance suite's fixtures: `namespace`, `store_factory`, `store`, and the sampled `backend`.
from tests.conformance.conftest import namespace, store, store_factory  # noqa: F401
from tests.support.inproc import serve_in_process
from tests.support.slice_backends import slice_backend  # noqa: F401

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

    def __init__(self, inner: Store) -> None:
        self._store = inner
        self.capabilities = inner.capabilities
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


@pytest.fixture
def store_calls(store: Store) -> CountingStore:  # noqa: F811 (the fixture)
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
