"""A real grpc.aio server on a free loopback port that can be stopped and started again on the same port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

T = TypeVar("T")


class RestartableServer:
    """Serves whatever `attach` adds; `stop()` then `start()` comes back on the same port."""

    def __init__(
        self,
        attach: Callable[[grpc.aio.Server], None],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._attach = attach
        self._interceptors = interceptors
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(interceptors=self._interceptors)
        self._attach(server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if port == 0:
            raise RuntimeError(f"could not bind 127.0.0.1:{self.port}")
        self.port = port
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within: float = 5.0
) -> T:
    """Call `probe` until `accept` says yes; fail after `within` seconds. Polls; never guesses a delay."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(0.01)
