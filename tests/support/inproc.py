"""A real grpc.aio server in this process, for tests where processes are not the point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import grpc

from microstate.server.registry import Microstate
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores


@asynccontextmanager
async def serve_in_process(
    microstate: Microstate, store: Store | Stores, *, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> AsyncIterator[str]:
    """Serve `microstate` over `store` (a records store, or the opened stores of every role it declares) on
    a free loopback port; yields the target "127.0.0.1:PORT"."""
    server = grpc.aio.server(interceptors=interceptors)
    microstate.attach(server, store if isinstance(store, Stores) else Stores.of(store))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
