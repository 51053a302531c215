"""The P5 baseline: a bare grpc.aio byte stream, the least a Python gRPC server does to move a blob.

`/bench.Blob/Read` streams the file given with --file in chunks of --chunk bytes (one pread per chunk, on
the event loop, identity serializers); `/bench.Blob/Write` writes a client stream of chunks to a new file
under --out-dir. No hashing, no protobuf, no store. Run as
`python bench/blob_stream_server.py --file F --chunk N --out-dir D --ready-file R`; it writes
{"port", "pid"} to R when serving and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.echo_server import serve_until_sigterm
from microstate.server.cli import event_loop_factory

SERVICE = "bench.Blob"
READ = f"/{SERVICE}/Read"
WRITE = f"/{SERVICE}/Write"


async def serve(source: Path, chunk: int, out_dir: Path, ready_file: Path) -> None:
    serial = itertools.count()

    async def read(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        fd = os.open(source, os.O_RDONLY)
        try:
            offset = 0
            while data := os.pread(fd, chunk, offset):
                offset += len(data)
                yield data
        finally:
            os.close(fd)

    async def write(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        path = out_dir / f"upload-{next(serial)}"
        # Blocking writes on the loop, one per chunk, as the SDK's fetch does: like for like.
        with open(path, "wb") as target:  # noqa: ASYNC230
            async for data in requests:
                target.write(data)
        path.unlink()
        return b""

    server = grpc.aio.server()
    handlers = {
        "Read": grpc.unary_stream_rpc_method_handler(read),
        "Write": grpc.stream_unary_rpc_method_handler(write),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    await serve_until_sigterm(server, ready_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, required=True, help="what Read streams")
    parser.add_argument("--chunk", type=int, required=True, help="bytes per message")
    parser.add_argument("--out-dir", type=Path, required=True, help="where Write writes (then removes)")
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(args.file, args.chunk, args.out_dir, args.ready_file))


if __name__ == "__main__":
    main()
