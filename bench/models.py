"""P5, the model registry's figures (issue 13): flat memory, throughput against a bare byte stream, and what
hashing inline costs.

- Peak RSS: a fresh models server (SQLite records, a blob directory) and a fresh SDK process push and fetch
  one blob of 1 MiB, then of the large size (256 MiB by default, 64 MiB with --quick, 1 GiB with
  --p5-large-mib 1024); each process's peak RSS (VmHWM / ru_maxrss) for the large blob must stay within
  20 MiB of the 1 MiB one.
- Throughput: SDK fetch (resolve, stream, hash, write, verify, rename) and SDK push (hash the file, stream,
  the server hashes and writes, verifies, commits) against a bare grpc.aio byte stream of the same 256 KiB
  chunks (bench/blob_stream_server.py: pread and send; receive and write), rounds interleaved. Target ≥ 0.7.
  Push is also measured with the file's digest remembered by the SDK (no pre-hash), and the pre-hash alone.
- Hashing: SHA-256 over the same bytes in 256 KiB updates, as a share of the bare stream's time: what
  verifying every byte adds, were it not overlapped with the transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from bench import blob_stream_server as baseline_script
from bench import env, load, services
from bench.report import Row, at_least, at_most
from bench.stack import Settings
from bench.throughput import compared
from microstate.client.models.v1 import ModelCache, ModelsClient, file_digest
from tests.support import processes
from tests.support.processes import ServerProcess

CHUNK = 256 * 1024
MIB = 1024 * 1024
RSS_GROWTH_MIB = 20
STREAM_MIB = 64
"""Bytes per throughput round (at most the large size)."""

_SDK_RSS = """
import asyncio, json, resource, sys
from microstate.client.models.v1 import ModelCache, ModelsClient, file_digest

async def main(target, path, cache):
    async with ModelsClient(target, cache=cache) as client:
        made = await client.push("p5", path)
        fetched = await client.fetch(f"p5/{made.version.version}")
        assert fetched.size == made.version.size_bytes
    print(json.dumps({"rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))

asyncio.run(main(*sys.argv[1:]))
"""


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(MIB, left))
            out.write(block)
            left -= len(block)
    return path


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


@contextlib.contextmanager
def models_server(workdir: Path, cores: frozenset[int]) -> Iterator[ServerProcess]:
    store = f"sqlite:///{workdir / 'models.db'}"
    with services.microstate_server("models", store, workdir, cores) as server:
        yield server


@contextlib.contextmanager
def byte_stream_server(source: Path, workdir: Path, cores: frozenset[int]) -> Iterator[ServerProcess]:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "blob.ready.json"
    arguments = [
        baseline_script.__file__,
        *(
            "--file",
            str(source),
            "--chunk",
            str(CHUNK),
            "--out-dir",
            str(workdir),
            "--ready-file",
            str(ready),
        ),
    ]
    server = processes.listening(processes.launch_python(arguments, workdir), ready, "blob stream")
    try:
        env.pin(server.pid, cores)
        yield server
    finally:
        server.stop()


async def _rss(settings: Settings, size: int, name: str) -> tuple[float, float]:
    """(server, SDK) peak RSS in MiB for a push and a fetch of `size` random bytes, fresh processes."""
    workdir = settings.workdir / f"p5-rss-{name}"
    workdir.mkdir(parents=True)
    source = random_file(workdir / "blob.bin", size)
    try:
        with models_server(workdir / "server", settings.cores.server) as server:
            code, output, errors = await processes.run_python(
                _SDK_RSS, server.target, str(source), str(workdir / "cache"), within=600
            )
            if code != 0:
                raise RuntimeError(f"the SDK process failed: {errors[-2000:]}")
            server_peak = peak_rss_mib(server.pid)
        return server_peak, json.loads(output.splitlines()[-1])["rss_kib"] / 1024
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _bare_read(channel: grpc.aio.Channel, target: Path) -> float:
    read = channel.unary_stream(baseline_script.READ)
    started = time.perf_counter()
    with open(target, "wb") as out:  # noqa: ASYNC230 - blocking writes per chunk, as the SDK's fetch
        async for data in read(b""):
            out.write(data)
    elapsed = time.perf_counter() - started
    target.unlink()  # noqa: ASYNC240
    return elapsed


async def _bare_write(channel: grpc.aio.Channel, source: Path) -> float:
    write = channel.stream_unary(baseline_script.WRITE)

    def chunks() -> Iterator[bytes]:
        with open(source, "rb") as data:
            while chunk := data.read(CHUNK):
                yield chunk

    started = time.perf_counter()
    await write(chunks())
    return time.perf_counter() - started


async def models(settings: Settings) -> list[Row]:
    large = settings.p5_large_mib * MIB
    (small_server, small_sdk), (large_server, large_sdk) = [
        await _rss(settings, size, name) for size, name in ((MIB, "small"), (large, "large"))
    ]
    size = min(large, STREAM_MIB * MIB)
    workdir = settings.workdir / "p5"
    workdir.mkdir()
    source = random_file(workdir / "blob.bin", size)
    with (
        models_server(workdir / "server", settings.cores.server) as server,
        byte_stream_server(source, workdir / "bare", settings.cores.server) as bare,
    ):
        async with ModelsClient(server.target, cache=workdir / "cache") as client:
            pushed = await client.push("p5", source)
            ref = f"p5/{pushed.version.version}"
            rounds = iter(range(10_000))

            async def fetch() -> float:
                client.cache = ModelCache(workdir / f"cache-{next(rounds)}")  # cold, on a warm channel
                started = time.perf_counter()
                await client.fetch(ref)
                elapsed = time.perf_counter() - started
                shutil.rmtree(client.cache.root)
                return elapsed

            async def push(*, remembered: bool = False) -> float:
                """A push of new bytes (a held digest sends none); `remembered`: of a file whose digest the
                SDK remembers (hashed before, unchanged since), so it skips its pre-hash."""
                path = random_file(workdir / "push.bin", size)
                if remembered:
                    settled = time.time() - 60
                    os.utime(path, (settled, settled))
                    client.cache.file_digest(path)
                started = time.perf_counter()
                await client.push("p5-push", path)
                elapsed = time.perf_counter() - started
                path.unlink()
                return elapsed

            async def push_remembered() -> float:
                return await push(remembered=True)

            async def pre_hash() -> float:
                """What push does before its stream: read and hash the file (in the page cache, as there)."""
                started = time.perf_counter()
                file_digest(source)
                return time.perf_counter() - started

            async with grpc.aio.insecure_channel(bare.target) as channel:

                async def bare_read() -> float:
                    return await _bare_read(channel, workdir / "bare-read.bin")

                async def bare_write() -> float:
                    return await _bare_write(channel, source)

                async def hashing() -> float:
                    return _hash_seconds(size)

                await fetch(), await bare_read()  # warm up both paths
                measured = await load.interleaved(settings.rounds, fetch, bare_read, hashing)
                fetches, bare_reads, hashes = measured
                client.cache = ModelCache(workdir / "push-cache")
                pushes, remembered, bare_writes, pre_hashes = await load.interleaved(
                    settings.rounds, push, push_remembered, bare_write, pre_hash
                )
    shutil.rmtree(workdir, ignore_errors=True)

    def rates(seconds: list[float]) -> list[float]:
        return [size / MIB / s for s in seconds]

    large_text = f"{settings.p5_large_mib:,} MiB"
    return [
        _growth("server", large_text, small_server, large_server),
        _growth("SDK", large_text, small_sdk, large_sdk),
        compared(
            "P5",
            f"download {size // MIB} MiB: SDK fetch (hash, verify, cache) vs bare grpc.aio byte stream",
            rates(fetches),
            rates(bare_reads),
            "MiB/s",
            at_least(0.7),
            "both write the bytes to a file; the SDK also hashes, fsyncs and renames",
        ),
        compared(
            "P5",
            f"upload {size // MIB} MiB: SDK push (file hashed first, server hashes) vs bare byte stream",
            rates(pushes),
            rates(bare_writes),
            "MiB/s",
            at_least(0.7),
            "the server writes the bytes to a file in both",
        ),
        compared(
            "P5",
            f"upload {size // MIB} MiB, digest remembered (file unchanged since hashed) vs bare byte stream",
            rates(remembered),
            rates(bare_writes),
            "MiB/s",
            None,
            "no pre-hash; the server still hashes every byte",
        ),
        compared(
            "P5",
            f"push's pre-hash of {size // MIB} MiB (before its stream), time as a share of the bare upload's",
            pre_hashes,
            bare_writes,
            "s",
            None,
            "a file in the page cache, as in the push rows",
        ),
        compared(
            "P5",
            f"sha256 of {size // MIB} MiB in 256 KiB updates, time as a share of the bare download's",
            hashes,
            bare_reads,
            "s",
            at_most(0.15),
            f"sha256 {size / MIB / min(hashes):,.0f} MiB/s on one core",
        ),
        compared(
            "P5",
            "download ceiling: the bare download plus sha256 of its bytes on the same core, vs the bare",
            rates([b + h for b, h in zip(bare_reads, hashes, strict=True)]),
            rates(bare_reads),
            "MiB/s",
            None,
            "what a fetch would reach were its only extra work the hash it must do (round by round)",
        ),
        compared(
            "P5",
            "upload ceiling: the bare upload plus sha256 of its bytes on the same core, vs the bare",
            rates([b + h for b, h in zip(bare_writes, hashes, strict=True)]),
            rates(bare_writes),
            "MiB/s",
            None,
            "the same for a push of a remembered digest: the server hashes every byte it publishes",
        ),
    ]


def _growth(who: str, large_text: str, small: float, large: float) -> Row:
    return Row(
        "P5",
        f"{who} peak RSS growth, {large_text} transfer vs 1 MiB (push + fetch, fresh processes)",
        large - small,
        None,
        "MiB",
        None,
        at_most(RSS_GROWTH_MIB, on="value", text=f"≤ {RSS_GROWTH_MIB} MiB"),
        f"peak {large:.1f} MiB vs {small:.1f} MiB",
    )


def _hash_seconds(source_size: int) -> float:
    """Seconds to SHA-256 `source_size` bytes in CHUNK updates (in this process, on the SDK's core)."""
    block = os.urandom(CHUNK)
    hasher = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(source_size // CHUNK):
        hasher.update(block)
    return time.perf_counter() - started
