"""FL, the feature-flags SDK of issue 12, against a `microstate serve flags` process on SQLite.

FL: local evaluation of a flag with three rules and a split (the SDK's synced rule set, no call) vs a plain
    dict lookup, p50 and evaluations per second on one core, with the calls the client made counted;
    a write → every subscribed SDK (several clients, one stream each) has applied it, p99, vs the
    write's own acknowledgement; and a worker back after an outage: the bytes its stream shipped to bring
    its saved rule set current (deltas only) vs a full snapshot of the same rule set.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from bench import services
from bench.load import percentile, sync_latencies
from bench.report import Row, at_least, at_most
from bench.stack import Settings
from bench.throughput import compared
from microstate.client.flags import EventKind, FlagsClient, RuleSetEvent, RuleSetState
from tests.client.flags_harness import bool_flag, model_flag

SUBSCRIBERS = 8
"""Clients following the rule set while writes are timed."""
WRITES_PER_ROUND = 20
RULE_SET_FLAGS = 1_000
"""Flags in the rule set the resume figure ships (besides the evaluated one)."""
OUTAGE_WRITES = 10
"""Flags changed while the resuming worker is away."""
WAIT = 10.0

CONTEXTS = [
    {"targetingKey": f"user-{n}", "region": "eu-west", "plan": "pro", "seats": 10, "email": f"u{n}@corp.io"}
    for n in range(1_000)
]
"""Subjects no rule's conditions match, so every evaluation tries the three rules and ends in the split."""


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {WAIT:g} s")
        await asyncio.sleep(0.001)


def _count_calls(client: FlagsClient) -> collections.Counter[str]:
    """Count every call the client's stub makes from now on (the bench's own instrumentation)."""
    calls: collections.Counter[str] = collections.Counter()
    stub = client._stub  # created by the client's first call
    for name in (
        "GetFlag",
        "ListFlags",
        "CreateFlag",
        "UpdateFlag",
        "DeleteFlag",
        "EvaluateFlag",
        "EvaluateAll",
    ):
        method = getattr(stub, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(stub, name, counted)
    return calls


def _evaluations(client: FlagsClient, settings: Settings) -> list[Row]:
    contexts = CONTEXTS
    evaluate = client.evaluate_string
    rules: dict[str, Any] = {"model": object()}
    counter = iter(range(10**9))

    def evaluation() -> object:
        return evaluate("model", "x", contexts[next(counter) % 1000])

    def lookup() -> object:
        return rules.get("model"), contexts[next(counter) % 1000]

    samples = settings.samples * 20
    sync_latencies(evaluation, samples)  # warm up: the interpreter specialises hot code
    evaluations, lookups = [], []
    for _ in range(settings.rounds):
        evaluations.append(sync_latencies(evaluation, samples))
        lookups.append(sync_latencies(lookup, samples))
    if {evaluation() for _ in range(200)} != {"small", "medium", "large"}:
        raise RuntimeError("the evaluations did not reach the split")

    batch = 100_000 if settings.rounds > 2 else 20_000
    rates = []
    for _ in range(settings.rounds):
        started = time.perf_counter()
        for n in range(batch):
            evaluate("model", "x", contexts[n % 1000])
        rates.append(batch / (time.perf_counter() - started))
    p50s = [median(part) for part in evaluations]
    every = [s for part in evaluations for s in part]
    return [
        compared(
            "FL",
            "local evaluation, 3 rules + a split (no rule matches, the split decides), p50 vs a dict lookup",
            p50s,
            [median(part) for part in lookups],
            "s",
            at_most(5e-6, on="value", text="p50 ≤ 5 µs"),
            f"p99 {percentile(every, 0.99) * 1e6:.2f} µs over {len(every):,} evaluations",
        ),
        Row(
            "FL",
            "local evaluations per second, one core (sequential, one thread)",
            median(rates),
            None,
            "/s",
            None,
            at_least(100_000, on="value", text="≥ 100k/s"),
            f"min {min(rates):,.0f}/s over {settings.rounds} batches of {batch:,}",
        ),
    ]


async def _propagation(admin: FlagsClient, target: str, settings: Settings) -> Row:
    applied: list[dict[int, float]] = []
    subscribers = [FlagsClient(target) for _ in range(SUBSCRIBERS)]
    try:
        for client in subscribers:
            seen: dict[int, float] = {}
            applied.append(seen)

            def record(event: RuleSetEvent, seen: dict[int, float] = seen) -> None:
                if event.kind is EventKind.CHANGED and event.revision is not None:
                    seen[event.revision] = time.perf_counter()

            client.add_listener(record)
            if (await client.start(wait=WAIT)).state is not RuleSetState.READY:
                raise RuntimeError("a subscriber did not sync")
        delays, acknowledged = [], []
        for n in range(WRITES_PER_ROUND * settings.rounds):
            started = time.perf_counter()
            write = asyncio.create_task(admin.update(bool_flag("launch", n % 2 == 0), ["default_variant"]))
            response = await write
            acknowledged.append(time.perf_counter() - started)
            revision = response.flag.revision
            await _until(
                lambda revision=revision: all(revision in seen for seen in applied),
                "every subscriber to apply a write",
            )
            delays.append(max(seen[revision] for seen in applied) - started)
    finally:
        for client in subscribers:
            await client.close()
    return Row(
        "FL",
        f"write sent → all {SUBSCRIBERS} subscribed SDKs applied it, p99 (loopback), vs the write's own"
        " acknowledgement p99",
        percentile(delays, 0.99),
        percentile(acknowledged, 0.99),
        "s",
        percentile(delays, 0.99) / percentile(acknowledged, 0.99),
        at_most(0.05, on="value", text="p99 ≤ 50 ms"),
        f"p50 {median(delays) * 1e3:.2f} ms, max {max(delays) * 1e3:.2f} ms over {len(delays)} writes",
    )


async def _resume(admin: FlagsClient, target: str, workdir: Path) -> Row:
    path = str(workdir / "worker.rules")
    async with FlagsClient(target, rule_set_path=path) as worker:
        await worker.start(wait=WAIT)
    # The worker is away while flags change, then comes back from its saved rule set.
    for n in range(OUTAGE_WRITES):
        await admin.update(bool_flag(f"flag-{n:04}", True), ["default_variant"])
    latest = (await admin.update(bool_flag("launch", True), ["default_variant"])).flag.revision
    async with FlagsClient(target, rule_set_path=path) as worker, FlagsClient(target) as fresh:
        for client in (worker, fresh):
            await client.start(wait=WAIT)
            await _until(
                lambda c=client: (c.rule_set_status().revision or 0) >= latest, "a client to catch up"
            )
        resumed, snapshot = worker.rule_set_status().sync, fresh.rule_set_status().sync
    if resumed.snapshots:
        raise RuntimeError("the resuming worker got a snapshot")
    return Row(
        "FL",
        f"worker back after an outage ({OUTAGE_WRITES + 1} flags changed): bytes its stream shipped vs a full"
        f" snapshot of the {RULE_SET_FLAGS + 2:,}-flag rule set",
        resumed.bytes,
        snapshot.bytes,
        "B",
        resumed.bytes / snapshot.bytes,
        at_most(0.05, text="deltas only"),
        f"resumed: {resumed.deltas} deltas, {resumed.heartbeats} heartbeats, {resumed.snapshots} snapshots",
    )


async def flags(settings: Settings) -> list[Row]:
    workdir = settings.workdir / "flags"
    workdir.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{workdir / 'flags.db'}"
    with services.microstate_server("flags", store, workdir, settings.cores.server) as server:
        async with FlagsClient(server.target) as admin:
            await admin.create(model_flag())
            await admin.create(bool_flag("launch", False))
            for n in range(RULE_SET_FLAGS):
                await admin.create(bool_flag(f"flag-{n:04}", False))
            async with FlagsClient(server.target) as client:
                await client.start(wait=WAIT)
                calls = _count_calls(client)
                rows = _evaluations(client, settings)
                calls_made = sum(calls.values())
                rows[0].note += f"; calls by the client meanwhile (but its SyncFlags stream): {calls_made}"
            rows.append(await _propagation(admin, server.target, settings))
            rows.append(await _resume(admin, server.target, workdir))
    return rows
