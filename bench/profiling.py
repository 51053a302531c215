"""Where the time goes: py-spy (--native) samples a process under load; samples are put into buckets.

Only servers are profiled: py-spy sampling the load generator (its own parent) misses most samples here.
Each sample goes to the bucket of its deepest frame that matches one (so JSON decoding called from the
servicer counts as JSON, a send() called from redis-py as socket I/O). Shares are of the busy samples:
threads blocked in epoll are idle, not cost. Multiplied by the CPU per call measured without the profiler
they give microseconds per call. Raw stacks are kept (bench/results/profile-*.txt, flamegraph-ready).
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import echo_server, load, services
from bench.load import Throughput
from bench.stack import HOT_KEY, Settings, batch_ids, full_stack
from microstate.client.profile.v1 import ProfileClient
from microstate.profile.v1 import profile_pb2

IDLE = "idle (blocked in epoll/poll)"
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    (IDLE, ("epoll_wait", "epoll_pwait", "EpollSelector.select", "poll (libc", "wait4", "_do_waitpid",
            "PyThread_acquire_lock", "pthread_cond_", "sem_wait")),
    ("kernel socket I/O (send/recv syscalls)", ("send (libc", "sendmsg (libc", "recv (libc", "recvmsg (libc",
                                                "write (libc", "read (libc", "writev (libc")),
    ("profile model: JSON + base64 (model.py)", ("server/profile/model.py",)),
    ("codec: build the Profile message (v1.py)", ("server/profile/v1.py", "server/profile/v2.py")),
    ("redis-py (+hiredis)", ("redis/", "hiredis")),
    ("store adapter (store/redis.py)", ("server/store/",)),
    ("servicer, domain, error wrapper", ("server/profile/", "server/errors.py")),
    ("contract pinning (pinning.py)", ("server/pinning.py",)),
    ("protobuf runtime (upb)", ("_message.abi3", "google/protobuf/")),
    ("gRPC (cygrpc + C core)", ("grpc/", "cygrpc", "libgrpc", "grpc_")),
    ("event loop (asyncio or uvloop)", ("asyncio/", "_asynciomodule", "selectors.py",
                                        "uvloop", "(loop.c:", "uv__")),
]  # fmt: skip
OTHER = "other (interpreter, gc, allocator)"


@dataclass
class Profile:
    name: str
    cpu_per_call: float
    """Seconds of CPU per call of the profiled process, measured without the profiler."""
    samples: int
    buckets: list[tuple[str, float]] = field(default_factory=list)
    """(bucket, share of busy samples), largest first; idle excluded."""
    top_self: list[tuple[str, float]] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{self.name}: {self.cpu_per_call * 1e6:.0f} µs CPU per call, {self.samples:,} busy samples"]
        for bucket, share in self.buckets:
            micros = share * self.cpu_per_call * 1e6
            lines.append(f"  {share * 100:5.1f}%  {micros:7.1f} µs  {bucket}")
        lines.append("  top self frames: " + "; ".join(f"{f} {s * 100:.1f}%" for f, s in self.top_self[:6]))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_per_call_us": self.cpu_per_call * 1e6,
            "busy_samples": self.samples,
            "buckets": [
                {"bucket": b, "share": s, "us_per_call": s * self.cpu_per_call * 1e6} for b, s in self.buckets
            ],
            "top_self": [{"frame": f, "share": s} for f, s in self.top_self],
        }


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for bucket, patterns in BUCKETS:
            if any(pattern in frame for pattern in patterns):
                return bucket
    return OTHER


def summarize(name: str, raw: str, cpu_per_call: float) -> Profile:
    """Bucket py-spy's raw output ("frame;frame;... count" per line)."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if not frame.startswith("thread (")]
        bucket = bucket_of(frames)
        buckets[bucket] += int(count)
        if bucket != IDLE:
            leaves[frames[-1]] += int(count)
    busy = sum(count for bucket, count in buckets.items() if bucket != IDLE)
    profile = Profile(name, cpu_per_call, busy)
    profile.buckets = [(b, c / busy) for b, c in buckets.most_common() if b != IDLE and busy]
    profile.top_self = [(f, c / busy) for f, c in leaves.most_common(12)]
    return profile


async def _record(pid: int, seconds: float, output: Path, drive: Callable[[float], Awaitable[object]]) -> str:
    spy = await asyncio.create_subprocess_exec(
        *["py-spy", "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", "200"],
        *["--native", "--format", "raw", "--output", str(output)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # attached
    await drive(seconds)
    _, errors = await spy.communicate()
    return _collected(output, spy.returncode, errors)


def _collected(output: Path, returncode: int | None, errors: bytes) -> str:
    if returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')}")
    return output.read_text()


async def _profile(
    settings: Settings, name: str, pid: int, drive: Callable[[float], Awaitable[Throughput]]
) -> Profile:
    cpu = (await drive(settings.window)).server_cpu_per_call
    settings.results.mkdir(parents=True, exist_ok=True)
    output = settings.results / f"profile-{name.split(':')[0].replace(' ', '-')}.txt"
    raw = await _record(pid, max(3.0, settings.window * 2), output, drive)
    return summarize(name, raw, cpu)


async def profiles(settings: Settings) -> list[Profile]:
    if shutil.which("py-spy") is None:
        raise services.Missing("py-spy not on PATH (pip install py-spy)")
    inflight, ids = settings.concurrency, batch_ids()
    found: list[Profile] = []
    async with full_stack(settings, "profile") as (_, server), ProfileClient(server.target) as sdk:
        payload = (await sdk.get(HOT_KEY)).value.SerializeToString()

        def driver(call: load.Call, n: int, pids: list[int]) -> Callable[[float], Awaitable[Throughput]]:
            return lambda seconds: load.closed_loop([call] * n, seconds, pids)

        async def get() -> None:
            await sdk.get(HOT_KEY)

        async def batch() -> None:
            await sdk.batch_get(ids)

        server_get = driver(get, inflight, [server.pid])
        server_batch = driver(batch, settings.batch_concurrency, [server.pid])
        found.append(await _profile(settings, "server GetProfile: SDK→server→Redis", server.pid, server_get))
        found.append(await _profile(settings, "server BatchGetProfiles(100)", server.pid, server_batch))
    with services.echo_server(len(payload), settings.workdir / "echo", settings.cores.server) as echo:
        async with grpc.aio.insecure_channel(echo.target) as channel:
            call = channel.unary_unary(echo_server.METHOD)
            request = profile_pb2.GetProfileRequest(user_id=HOT_KEY).SerializeToString()

            async def echo_once() -> None:
                await call(request, timeout=30.0)  # generous: py-spy stalls the process while attaching

            echo_load = driver(echo_once, inflight, [echo.pid])
            found.append(
                await _profile(settings, "server echo: the bare grpc.aio floor", echo.pid, echo_load)
            )
    return found
