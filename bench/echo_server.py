"""The P1 baseline: a bare grpc.aio server whose one method answers every request with a fixed payload.

No interceptors, no health, no reflection, identity (bytes) serializers: the least work a Python gRPC
server can do per unary call. The payload has the size of the profile the full stack returns, so both
servers move the same bytes. With `--redis URL` each call instead fetches the payload with one Redis GET over
the Redis store's own multiplexed connection (microstate.server.store.redis_pipeline): the ceiling of a Python
gRPC server that makes one Redis round trip per request, as the profile server's Get does. Run as
`python bench/echo_server.py --size N --ready-file F [--redis URL [--mget KEYS_FILE]]`; it writes
{"port", "pid"} to F when serving and stops on SIGTERM. With `--mget` (P2's ceiling) each call reads the keys
listed in KEYS_FILE (one per line) with one MGET and answers their concatenation: the least a Python gRPC
server can do to serve a batch read from Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import grpc

from microstate.server.cli import event_loop_factory

SERVICE = "bench.Echo"
KEY = "bench:echo"
METHOD = f"/{SERVICE}/Echo"


Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


async def _handler(size: int, redis_url: str | None, mget_keys: list[str]) -> Handler:
    payload = b"x" * size
    if redis_url is None:

        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return payload

        return echo

    from microstate.server.store.redis_pipeline import RedisPipeline

    pipeline = RedisPipeline.for_url(redis_url, timeout=1.0, connect_timeout=1.0)
    await pipeline.execute("SET", KEY, payload)

    async def echo_get(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return cast(bytes, await pipeline.execute("GET", KEY))

    async def echo_mget(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"".join(await pipeline.execute("MGET", *mget_keys))

    return echo_mget if mget_keys else echo_get


async def serve(size: int, ready_file: Path, redis_url: str | None, mget_keys: list[str]) -> None:
    echo = await _handler(size, redis_url, mget_keys)
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(echo)  # no (de)serializers: requests and replies are bytes
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})])
    await serve_until_sigterm(server, ready_file)


async def serve_until_sigterm(server: grpc.aio.Server, ready_file: Path) -> None:
    """Start `server` on a free loopback port, announce it in `ready_file` ({"host", "port", "pid"}, written
    atomically), and serve until SIGTERM."""
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    partial = ready_file.with_name(ready_file.name + ".partial")
    partial.write_text(json.dumps({"host": "127.0.0.1", "port": port, "pid": os.getpid()}))
    partial.replace(ready_file)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, required=True, help="bytes in every reply")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--redis", metavar="URL", help="fetch the reply from this Redis on every call")
    parser.add_argument("--mget", metavar="KEYS_FILE", type=Path, help="with --redis: MGET these per call")
    args = parser.parse_args()
    mget_keys = args.mget.read_text().split() if args.mget else []
    # The same event loop as `microstate serve` (uvloop when installed), so the ratio compares like with like.
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(args.size, args.ready_file, args.redis, mget_keys))


if __name__ == "__main__":
    main()
