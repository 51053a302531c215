"""The benchmark harness's arithmetic (bench/): a wrong ratio or a misread h2load line would report a target
met or missed without anyone noticing, so the parts that turn measurements into figures are tested here. The
benchmarks themselves are not part of the test run (`python -m bench`)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from bench import load, profiling, sessions
from bench.report import Row, at_least, at_most, skipped
from microstate.server.store import open_store
from tests.support.redis_server import RedisServer

H2LOAD_OUTPUT = """
starting benchmark...
finished in 1.23s, 8130.08 req/s, 1.02MB/s
requests: 10000 total, 10000 started, 10000 done, 9990 succeeded, 4 failed, 6 errored, 0 timeout
status codes: 10000 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_the_paired_ratio_is_the_median_of_ratios_measured_back_to_back() -> None:
    # A slow round hits subject and baseline alike: per-round ratios cancel it, a ratio of medians would not.
    assert load.paired_ratio([10, 100, 12], [20, 200, 20]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        load.paired_ratio([1, 2], [1])


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    quantiles = [load.percentile(values, q) for q in (0.5, 0.99, 1.0)]
    assert quantiles == pytest.approx([51.0, 99.0, 100.0])


async def test_interleaved_rounds_rotate_which_measure_goes_first() -> None:
    order: list[str] = []

    def measure(name: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            order.append(name)
            return name

        return run

    results = await load.interleaved(3, measure("a"), measure("b"))
    assert results == [["a", "a", "a"], ["b", "b", "b"]]
    assert order == ["a", "b", "b", "a", "a", "b"]


def test_a_grpc_frame_is_a_flag_a_big_endian_length_and_the_message() -> None:
    assert load.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"


def test_h2load_output_is_read_with_failures_and_errors_counted_as_failed() -> None:
    result = load.parse_h2load(H2LOAD_OUTPUT)
    assert (result.succeeded, result.failed) == (9990, 10)
    assert result.rate == pytest.approx(8130.08)
    with pytest.raises(RuntimeError, match="unexpected h2load output"):
        load.parse_h2load("connect: Connection refused")


def test_targets_judge_the_ratio_or_the_value_they_name() -> None:
    ratio_row = Row("P1", "x", 70.0, 100.0, "calls/s", ratio=0.7, target=at_least(0.7))
    value_row = Row("P3", "y", 6.0, 0.2, "µs", ratio=30.0, target=at_most(5.0, on="value"))
    assert (ratio_row.met, value_row.met) == (True, False)
    assert skipped("P5", "z", "n/a").met is None


def test_a_profile_sample_counts_for_its_deepest_matching_frame_and_idle_is_left_out() -> None:
    raw = "\n".join(
        [
            "main (cli.py:1);RedisStore.get (server/store/redis.py:9);send (libc.so.6) 3",
            "main (cli.py:1);ProfileServicer.GetProfile (server/profile/servicer.py:5) 1",
            "main (cli.py:1);uv_run (core.c:1);epoll_wait (libc.so.6) 96",
        ]
    )
    profile = profiling.summarize("t", raw, cpu_per_call=100e-6)
    assert profile.samples == 4
    assert dict(profile.buckets) == {
        "kernel socket I/O (send/recv syscalls)": pytest.approx(0.75),
        "servicer, domain, error wrapper": pytest.approx(0.25),
    }


@pytest.mark.redis
async def test_s3_counts_store_writes_as_the_lua_scripts_redis_runs(redis_server: RedisServer) -> None:
    # S3 reports the writes of a revoke-all as the scripts Redis ran during it: that holds only while the
    # Redis store makes each write one script and reads none.
    store = await open_store(redis_server.url, f"bench-{secrets.token_hex(4)}")
    redis = aioredis.from_url(redis_server.url)
    try:
        await store.put("warm", b"up")  # the first call checks the layout and loads the scripts
        before = await sessions._script_calls(redis)
        await store.get("warm")
        await store.batch_get(["warm", "other"])
        assert await sessions._script_calls(redis) == before
        await store.put("k", b"v")
        await store.put("k", b"w", ttl=60)
        assert await sessions._script_calls(redis) == before + 2
    finally:
        await redis.aclose()
        await store.close()
