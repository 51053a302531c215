"""SC: the Redis Cluster store against the single-node Redis store (issue 18), store calls only.

Subject: a `redis+cluster://` store on a local 3-master, 3-replica cluster (32 partitions); baseline: a
`redis://` store on one redis-server. Both called from this process, 16 calls in flight; the figure is this
process's CPU per call (what a microstate server spends in its store layer), so the ratio is what the
cluster client costs over the single-node path. Then: keys and writes spread over the masters (the largest
and smallest share against an even one), what `wait=1` costs an Update, and what Get and Update cost while a
repartition (32 -> 48 partitions) has moved half the keys, against the same store at rest. Last, the capacity
model's server figures (docs/scaling.md): a profile server's CPU per UpdateProfile and per GetProfile, through
the SDK, 16 in flight, with the server on the cluster and on one Redis.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from statistics import median
from typing import Any

from bench import load, services
from bench.report import Row, at_most
from bench.stack import BATCH, Settings, sample_profile
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.server.store import Store, open_store
from tests.support.processes import ServerProcess

IN_FLIGHT = 16
VALUE = b"x" * 380  # the size of a typical profile record


async def _cpu_per_call(call: Callable[[int], Awaitable[Any]], calls: int) -> float:
    """CPU seconds of this process per call, `IN_FLIGHT` calls at a time."""
    counter = iter(range(calls))

    async def worker() -> None:
        for n in counter:
            await call(n)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return (time.process_time() - started) / calls


async def _operations(store: Store, calls: int) -> dict[str, Callable[[], Awaitable[float]]]:
    keys = [f"user-{i:04d}" for i in range(1000)]
    for chunk in range(0, len(keys), 100):
        await asyncio.gather(*(store.put(key, VALUE) for key in keys[chunk : chunk + 100]))
    return {
        "Get": lambda: _cpu_per_call(lambda n: store.get(keys[n % 1000]), calls),
        f"BatchGet({BATCH})": lambda: _cpu_per_call(
            lambda n: store.batch_get(keys[(n * BATCH) % 900 : (n * BATCH) % 900 + BATCH]), calls // 10
        ),
        "Update": lambda: _cpu_per_call(lambda n: store.put(keys[n % 1000], VALUE), calls),
    }


def _spread(counts: Counter[int]) -> float:
    """The largest deviation of a master's share from an even share, as a fraction of the even share."""
    even = sum(counts.values()) / len(counts)
    return max(abs(count - even) for count in counts.values()) / even


async def cluster(settings: Settings) -> list[Row]:
    services.require("redis-cli", "apt-get install redis-tools")
    from tests.support.redis_cluster import running_redis_cluster

    calls = settings.samples * 4
    rows: list[Row] = []
    with (
        services.redis(settings.cores.server) as single_url,
        running_redis_cluster(replicas_per_master=1) as nodes,
    ):
        single = await open_store(single_url, "benchsc")
        clustered = await open_store(nodes.url, "benchsc")
        waiting = await open_store(f"{nodes.url}?wait=1", "benchscwait")
        try:
            subject, baseline = await _operations(clustered, calls), await _operations(single, calls)
            waited = (await _operations(waiting, calls))["Update"]
            for op in subject:
                rows.append(
                    _ratio_row(
                        f"{op}: redis+cluster:// vs redis:// store, CPU per call, {IN_FLIGHT} in flight",
                        await load.interleaved(settings.rounds, subject[op], baseline[op]),
                        note="3 masters + 3 replicas, 32 partitions; this process's CPU (the store layer)",
                    )
                )
            rows.append(
                _ratio_row(
                    "Update with wait=1 (WAIT for a replica) vs without, CPU per call",
                    await load.interleaved(settings.rounds, waited, subject["Update"]),
                )
            )
            rows += await _repartition_rows(nodes.url, subject, settings)
            rows += await _spread_rows(clustered, nodes)
        finally:
            for store in (single, clustered, waiting):
                await store.close()
        rows += await _server_rows(settings, nodes.url, single_url)
    return rows


async def _server_rows(settings: Settings, cluster_url: str, single_url: str) -> list[Row]:
    """Profile server CPU per UpdateProfile (on the cluster vs on one Redis) and per GetProfile (on the
    cluster): the capacity model's per-call server figures. Updates go to 200 profiles, so to most
    partitions; each changes the display name (a real write every time)."""
    users = [f"sc-{i:03d}" for i in range(200)]
    numbers = itertools.count()
    serve = functools.partial(services.profile_server, cores=settings.cores.server)
    with (
        serve(cluster_url, settings.workdir / "sc-cluster") as on_cluster,
        serve(single_url, settings.workdir / "sc-single") as on_single,
    ):
        async with (
            ProfileClient(on_cluster.target) as to_cluster,
            ProfileClient(on_single.target) as to_single,
        ):
            for client in (to_cluster, to_single):
                await asyncio.gather(*(client.create(sample_profile(user)) for user in users))

            def window(client: ProfileClient, server: ServerProcess, op: str) -> Callable[[], Awaitable[Any]]:
                async def once() -> None:
                    n = next(numbers)
                    user = users[n % len(users)]
                    if op == "Update":
                        await client.update(Profile(user_id=user, display_name=f"n{n}"), ["display_name"])
                    else:
                        await client.get(user)

                return lambda: load.closed_loop([once] * IN_FLIGHT, settings.window, [server.pid])

            measures = (
                window(to_cluster, on_cluster, "Update"),
                window(to_single, on_single, "Update"),
                window(to_cluster, on_cluster, "Get"),
            )
            for measure in measures:
                await measure()  # warm up
            runs = await load.interleaved(settings.rounds, *measures)

    updates, single, gets = ([window.server_cpu_per_call for window in run] for run in runs)
    compared = {
        "UpdateProfile: server CPU per call, profile server on redis+cluster:// vs on redis://": single,
        "UpdateProfile vs GetProfile: server CPU per call, both on redis+cluster:// (capacity model)": gets,
    }
    note = "profile server (auditing on, as served by default); SDK, 16 in flight"
    return [
        Row("SC", what, median(updates), median(base), "s", load.paired_ratio(updates, base), note=note)
        for what, base in compared.items()
    ]


def _ratio_row(measurement: str, rounds: list[list[Any]], note: str = "") -> Row:
    """A row of CPU seconds per call: the subject's and the baseline's median rounds, and their ratio."""
    value, base = rounds
    median = sorted(value)[len(value) // 2], sorted(base)[len(base) // 2]
    return Row("SC", measurement, *median, "s", load.paired_ratio(value, base), note=note)


async def _repartition_rows(
    url: str, at_rest: dict[str, Callable[[], Awaitable[float]]], settings: Settings
) -> list[Row]:
    """Get and Update on a namespace whose repartition has moved half its keys (the first 500 of 1000, in
    key order), against `at_rest`, the same calls on a namespace that is not repartitioning."""
    from microstate.server.store.redis_cluster import RedisClusterStore
    from microstate.server.store.redis_cluster_repartition import arm, begin, move_batch

    store = await open_store(url, "benchscmoving")
    runner = await open_store(url, "benchscmoving")
    try:
        assert isinstance(runner, RedisClusterStore)
        moving = await _operations(store, settings.samples * 4)
        await begin(runner, 48)
        await asyncio.sleep(1.2)  # the stores read the next layout (LAYOUT_REFRESH) before a key moves
        await arm(runner)
        await move_batch(runner, None, 500)
        return [
            _ratio_row(
                f"{op} while a repartition has moved half the keys vs at rest, CPU per call",
                await load.interleaved(settings.rounds, moving[op], at_rest[op]),
                note="half the keys answered by their old partition, half by their new one",
            )
            for op in ("Get", "Update")
        ]
    finally:
        await store.close()
        await runner.close()


async def _spread_rows(store: Any, nodes: Any) -> list[Row]:
    from redis.crc import key_slot

    from microstate.server.store.redis_cluster import partition_of, partition_tags

    client = nodes.client(nodes.nodes[0])
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    owner = {slot: int(master[1]) for low, high, master, *_ in ranges for slot in range(low, high + 1)}
    tags = partition_tags(store.namespace, 32)
    keys = [f"key-{i}" for i in range(100_000)]
    placed = Counter(owner[key_slot(tags[partition_of(key, 32)].encode())] for key in keys)
    return [
        Row(
            "SC",
            "keys per master: largest deviation from an even share (100,000 keys, 3 masters, 32 partitions)",
            100 * _spread(placed),
            None,
            "%",
            target=at_most(10, on="value", text="≤ 10%"),
            note=", ".join(f"{count:,}" for count in sorted(placed.values())),
        )
    ]
