"""Flags service tests run on SQLite and Redis by default, on every store backend under `slow`, with the store
conformance suite's fixtures (`backend`, `store`, `store_factory`).

`serve` starts a flags server in this process over a store (its rule set stops with it); `stub` is a
FlagService stub of one over `store`, with heartbeats every 0.2 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc
import pytest

from microstate.flags.v1 import flags_pb2_grpc
from microstate.server.flags import MICROSTATE, attach_with
from microstate.server.registry import Microstate
from microstate.server.store import Store
from microstate.server.store.roles import Stores

# The store conformance suite's fixtures: `namespace`, `store_factory`, `store`, and the sampled `backend`.
from tests.conformance.conftest import namespace, store, store_factory  # noqa: F401
from tests.support.slice_backends import slice_backend  # noqa: F401

HEARTBEAT = 0.2

Serve = Callable[..., AbstractAsyncContextManager[flags_pb2_grpc.FlagServiceStub]]


@asynccontextmanager
async def serve_flags(
    store: Store,  # noqa: F811 (a parameter, not the fixture)
    *,
    heartbeat_interval: float = HEARTBEAT,
    options: list[tuple[str, int]] | None = None,
) -> AsyncIterator[flags_pb2_grpc.FlagServiceStub]:
    """A flags server on a free loopback port over `store`, and a stub of it; on exit the server stops and
    its rule set and streams end (as `stopping` ends them in the runtime)."""
    microstate: Microstate = dataclasses.replace(
        MICROSTATE, attach=attach_with(heartbeat_interval=heartbeat_interval)
    )
    stopping = asyncio.Event()
    server = grpc.aio.server()
    microstate.attach(server, Stores.of(store), stopping=stopping)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            yield flags_pb2_grpc.FlagServiceStub(channel)
    finally:
        stopping.set()
        await server.stop(grace=None)
        await asyncio.sleep(0)  # the rule set's task sees `stopping`


@pytest.fixture
def serve() -> Serve:
    return serve_flags


@pytest.fixture
async def stub(store: Store) -> AsyncIterator[flags_pb2_grpc.FlagServiceStub]:  # noqa: F811 (the fixture)
    async with serve_flags(store) as stub:
        yield stub
