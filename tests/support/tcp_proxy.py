"""A TCP proxy on loopback that can slow the bytes it forwards, or hold them (a network partition).

Put it between two real processes (a server and its redis, a client and a server) to inject latency
without touching either. It runs its own asyncio loop in a daemon thread, so a test's loop that is busy
(or blocked in a synchronous wait) never stalls the traffic.

Each chunk read is due `delay` seconds after it arrived (the delay in force when it arrived); chunks keep
their order. While `partitioned`, nothing is forwarded, and connections stay open, as when a network
drops packets rather than refusing them; healing it lets the held bytes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType
from typing import Self

CHUNK_BYTES = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream_port`; `with TcpProxy(n) as proxy:` runs it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.delay = 0.0
        """Seconds each chunk is held before it is forwarded (read once per chunk, when it arrives)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def partition(self) -> None:
        """Hold every byte from now on, connections left open."""
        self._loop.call_soon_threadsafe(self._event().clear)

    def heal(self) -> None:
        """Forward again, the held bytes first."""
        self._loop.call_soon_threadsafe(self._event().set)

    def _event(self) -> asyncio.Event:
        assert self._flowing is not None, "the proxy is not running"
        return self._flowing

    def _call(self, coroutine: object) -> int:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        result: int = future.result(timeout=10)
        return result

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> int:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()
        return 0

    async def _accept(self, down_reader: asyncio.StreamReader, down_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            down_writer.close()  # upstream refuses: so does the proxy, by closing
            return
        for reader, writer in ((down_reader, up_writer), (up_reader, down_writer)):
            pump = asyncio.create_task(self._pump(reader, writer))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy `reader` to `writer`, each chunk at its due time; close `writer` when `reader` ends."""
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                at, chunk = await due.get()
                if not chunk:
                    return
                if (wait := at - time.monotonic()) > 0:
                    await asyncio.sleep(wait)  # the injected latency itself
                await self._event().wait()
                writer.write(chunk)
                await writer.drain()

        forwarder = asyncio.create_task(forward())
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                due.put_nowait((time.monotonic() + self.delay, chunk))
            due.put_nowait((time.monotonic() + self.delay, b""))
            await forwarder
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await forwarder
            writer.close()
