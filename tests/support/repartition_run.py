"""A repartition run in a process of its own, for tests that kill it: `python -m tests.support.repartition_run
URL NAMESPACE PARTITIONS BATCH PAUSE SETTLE` prints one JSON line per batch (`converted`, `examined`)."""

from __future__ import annotations

import asyncio
import json
import sys

from microstate.server.kit.migrate import Progress
from microstate.server.repartitioning import repartition
from microstate.server.store import open_store
from microstate.server.store.redis_cluster import RedisClusterStore


def report(progress: Progress) -> None:
    print(json.dumps({"converted": progress.state.converted, "examined": progress.examined}), flush=True)


async def main(url: str, namespace: str, partitions: int, batch: int, pause: float, settle: float) -> None:
    store = await open_store(url, namespace)
    assert isinstance(store, RedisClusterStore)
    try:
        await repartition(store, partitions, batch=batch, pause=pause, settle=settle, report=report)
    finally:
        await store.close()


if __name__ == "__main__":
    url, namespace, partitions, batch, pause, settle = sys.argv[1:]
    asyncio.run(main(url, namespace, int(partitions), int(batch), float(pause), float(settle)))
