"""Latency of Get and Update through the whole stack on each backend, next to the raw store call.

One call in flight. The subject is the SDK against a profile server on the backend; the baseline is the
same store class called directly from this process (`store.get` / `store.put`, a value of the same size),
so the ratio is what the gRPC hop, the server and the SDK add on top of the store.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

from bench import load, services
from bench.load import percentile
from bench.report import Row
from bench.stack import Settings, sample_profile
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.server.profile.v1 import from_message
from microstate.server.store import open_store

KEY = "latency"


@contextlib.contextmanager
def _store_url(settings: Settings, backend: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{(settings.workdir / 'latency.db').resolve()}"
    elif backend == "redis":
        with services.redis(settings.cores.server) as url:
            yield url
    else:
        with services.mongo(settings.cores.server) as url:
            yield url


def _rows(backend: str, op: str, subject: list[float], baseline: list[float]) -> list[Row]:
    rows = []
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        value, base = percentile(subject, q), percentile(baseline, q)
        rows.append(
            Row(
                "LAT",
                f"{backend}: {op} {name}, SDK→server→store vs raw store.{'get' if op == 'Get' else 'put'}",
                value,
                base,
                "s",
                value / base,
                note=f"{len(subject):,} calls each" if name == "p50" else "",
            )
        )
    return rows


async def latency(settings: Settings, backend: str) -> list[Row]:
    samples = settings.samples if backend != "mongo" else max(50, settings.samples // 2)
    profile = sample_profile(KEY)
    value = from_message(profile).to_bytes()  # what the server stores for this profile, same size
    names = (f"n{i}" for i in itertools.count())
    with (
        _store_url(settings, backend) as url,
        services.profile_server(url, settings.workdir / f"lat-{backend}", settings.cores.server) as server,
    ):
        store = await open_store(url, "benchraw")
        try:
            async with ProfileClient(server.target) as client:
                await client.create(profile)
                await store.put(KEY, value)

                async def sdk_get() -> None:
                    await client.get(KEY)

                async def raw_get() -> None:
                    await store.get(KEY)

                async def sdk_update() -> None:
                    await client.update(Profile(user_id=KEY, display_name=next(names)), ["display_name"])

                async def raw_put() -> None:
                    await store.put(KEY, value)

                calls = (raw_get, sdk_get, raw_put, sdk_update)
                for call in calls:
                    await load.latencies(call, 20)  # warm up
                measures = (load.sampler(call, samples) for call in calls)
                results = await load.interleaved(settings.rounds, *measures)
        finally:
            await store.close()
    raw_gets, sdk_gets, raw_puts, sdk_updates = ([s for part in result for s in part] for result in results)
    return _rows(backend, "Get", sdk_gets, raw_gets) + _rows(backend, "Update", sdk_updates, raw_puts)
