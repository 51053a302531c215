"""A real grpc.aio server in this process, for tests where processes are not the point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import grpc

from microstate.server.kit import subjects
from microstate.server.registry import Microstate
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores


@asynccontextmanager
async def serve_in_process(
    microstate: Microstate,
    store: Store | Stores,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[str]:
    """Serve `microstate` over `store` (its records store, or all its roles' stores) on a free loopback
    port; yields the target "127.0.0.1:PORT". `stopping` is set before the server stops, as the runtime
    does, so the slice's background tasks and streams end."""
    server = grpc.aio.server(interceptors=interceptors)
    stopping = stopping or asyncio.Event()
    stores = store if isinstance(store, Stores) else Stores.of(store)
    microstate.attach(server, stores, stopping=stopping)
    if microstate.subjects is not None:
        subjects.attach(server, microstate.name, microstate.subjects, stores)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stopping.set()
        await server.stop(grace=None)
