"""Load generators: a closed-loop asyncio driver, a sequential latency sampler, and h2load (C, not Python).

Numbers are summarised here too: rates, percentiles, and `interleaved`, which alternates the baseline and
the subject round by round (ABBA...) so slow drift on a shared machine hits both sides alike.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from bench import env
from bench.services import require

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Throughput:
    """One closed-loop window: calls completed per worker, and the CPU the watched processes used."""

    counts: tuple[int, ...]
    seconds: float
    server_cpu: tuple[float, ...]
    """CPU seconds each watched server process used, per wall second (1.0 = one core busy)."""
    client_cpu: float
    """The same for the load generator (this process)."""

    @property
    def calls(self) -> int:
        return sum(self.counts)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def server_cpu_per_call(self) -> float:
        """Seconds of server CPU per call (all watched servers together)."""
        return sum(self.server_cpu) * self.seconds / max(1, self.calls)


class CpuMeter:
    """CPU seconds used by some processes between `__init__` and `stop`, per wall second."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = list(pids)
        self._start = time.perf_counter()
        self._cpu = [env.cpu_seconds(pid) for pid in self._pids]
        self._own = time.process_time()

    def stop(self) -> tuple[tuple[float, ...], float]:
        """(each process's CPU share, this process's CPU share) since the start."""
        wall = time.perf_counter() - self._start
        shares = tuple(
            (env.cpu_seconds(pid) - before) / wall for pid, before in zip(self._pids, self._cpu, strict=True)
        )
        return shares, (time.process_time() - self._own) / wall


async def closed_loop(workers: Sequence[Call], seconds: float, server_pids: Sequence[int] = ()) -> Throughput:
    """Each worker calls its function back to back for `seconds`; one worker = one call in flight."""
    counts = [0] * len(workers)
    deadline = time.perf_counter() + seconds

    async def run(index: int, call: Call) -> None:
        while time.perf_counter() < deadline:
            await call()
            counts[index] += 1

    meter = CpuMeter(server_pids)
    started = time.perf_counter()
    await asyncio.gather(*(run(i, call) for i, call in enumerate(workers)))
    elapsed = time.perf_counter() - started
    server_cpu, client_cpu = meter.stop()
    return Throughput(tuple(counts), elapsed, server_cpu, client_cpu)


async def latencies(call: Call, count: int) -> list[float]:
    """Seconds taken by each of `count` sequential calls (one in flight)."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        started = clock()
        await call()
        samples.append((clock() - started) / 1e9)
    return samples


def sampler(call: Call, count: int) -> Callable[[], Awaitable[list[float]]]:
    """A measure for `interleaved`: the latencies of `count` sequential calls of `call`."""

    async def measure() -> list[float]:
        return await latencies(call, count)

    return measure


def sync_latencies(call: Callable[[], object], count: int) -> list[float]:
    """`latencies` for a plain function."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        started = clock()
        call()
        samples.append((clock() - started) / 1e9)
    return samples


async def block_interleaved(calls: Sequence[Call], count: int, block: int) -> list[list[float]]:
    """`count` sequential latencies of each call, taken in blocks of `block` calls that alternate between
    the calls (ABBA...), so a burst of load from the rest of a shared machine lands on all of them alike;
    finer-grained than `interleaved` rounds, for tail percentiles, which such bursts make."""
    results: list[list[float]] = [[] for _ in calls]
    for index in range(-(-count // block)):
        order = range(len(calls)) if index % 2 == 0 else reversed(range(len(calls)))
        for which in order:
            results[which] += await latencies(calls[which], min(block, count - index * block))
    return results


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def interleaved(rounds: int, *measures: Callable[[], Awaitable[Any]]) -> list[list[Any]]:
    """Run every measure `rounds` times, rotating which goes first each round; results per measure."""
    results: list[list[Any]] = [[] for _ in measures]
    for index in range(rounds):
        for offset in range(len(measures)):
            which = (index + offset) % len(measures)
            results[which].append(await measures[which]())
    return results


def paired_ratio(subject: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the per-round ratios subject/baseline (each pair measured back to back)."""
    return median(s / b for s, b in zip(subject, baseline, strict=True))


# --- h2load ---------------------------------------------------------------------------------------------


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass(frozen=True)
class H2loadResult:
    succeeded: int
    failed: int
    rate: float
    """Calls per second, as h2load reports it."""


H2Run = tuple[list[H2loadResult], tuple[float, ...]]
"""One `h2load()` run: a result per target, and each watched server's CPU share."""

_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)


def h2load_command(target: str, method: str, body: Path, *, requests: int, streams: int) -> list[str]:
    """h2load sending `requests` gRPC calls with `body` over one connection, `streams` at a time.

    By count, not --duration: h2load's timed mode reported a third fewer calls/s here for the same server.
    """
    executable = require("h2load", "apt-get install nghttp2-client")
    headers = ["content-type: application/grpc", "te: trailers"]
    return [
        executable,
        "--requests", str(requests),
        "--clients", "1",  # one connection, like one Python channel
        "--max-concurrent-streams", str(streams),
        "--threads", "1",
        "--data", str(body),
        *(argument for header in headers for argument in ("--header", header)),
        f"http://{target}{method}",
    ]  # fmt: skip


def parse_h2load(output: str) -> H2loadResult:
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    if finished is None or requests is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    succeeded, failed, errored = (int(group) for group in requests.groups())
    return H2loadResult(succeeded, failed + errored, float(finished.group(1)))


async def h2load(
    targets: Sequence[tuple[str, str, Path]], *, requests: int, streams: int, server_pids: Sequence[int] = ()
) -> H2Run:
    """One h2load per (target, method, body), all at once; their results and each server's CPU share.

    HTTP status 200 counts as success; grpc-status lives in trailers h2load does not check, so callers
    verify once (with `grpc_status_ok`) that the body really gets an OK answer.
    """
    commands = [h2load_command(t, m, b, requests=requests, streams=streams) for t, m, b in targets]
    meter = CpuMeter(server_pids)
    children = [
        await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for command in commands
    ]
    outputs = [(await child.communicate())[0].decode() for child in children]
    server_cpu, _ = meter.stop()
    results = [parse_h2load(output) for output in outputs]
    if any(result.failed for result in results):
        raise RuntimeError(f"h2load calls failed: {results}")
    return results, server_cpu


@dataclass
class H2Window:
    """h2load runs of about `seconds` each: the request count follows the rate of the previous run."""

    targets: Sequence[tuple[str, str, Path]]
    seconds: float
    streams: int
    server_pids: Sequence[int] = ()
    _rate: float = 0.0

    async def __call__(self) -> H2Run:
        if not self._rate:  # calibrate (and warm up) with a short run first
            results, _ = await h2load(self.targets, requests=300, streams=self.streams)
            self._rate = min(result.rate for result in results)
        requests = max(300, round(self._rate * self.seconds))
        results, cpu = await h2load(
            self.targets, requests=requests, streams=self.streams, server_pids=self.server_pids
        )
        self._rate = min(result.rate for result in results)
        return results, cpu


def grpc_status_ok(target: str, method: str, body: Path) -> bool:
    """Whether one request with `body` gets grpc-status 0 (checked with nghttp, from nghttp2-client)."""
    executable = require("nghttp", "apt-get install nghttp2-client")
    headers = ["content-type: application/grpc", "te: trailers"]
    command = [
        executable,
        "-v",
        "-d",
        str(body),
        *(f"--header={h}" for h in headers),
        f"http://{target}{method}",
    ]
    output = subprocess.run(command, capture_output=True, timeout=10, check=False).stdout.decode(
        errors="replace"
    )
    return re.search(r"grpc-status: 0\b", output) is not None
