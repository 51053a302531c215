"""On Redis with an AOF, erasure is complete once Redis rewrites its AOF: what `forget` leaves (a stream entry
it removed) is not written again, and the rewrite replaces every file holding the old writes (SECURITY.md).
The same on a Redis Cluster, whose nodes run with an AOF too: the subject's records and changes fall in one
partition, on one master, and the rewrite of every master leaves no file holding them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from microstate.server.kit.subjects import erase_records
from microstate.server.store import open_store
from tests.gdpr.harness import MARKER, occurrences, rewrite_aof
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, running_redis_server

pytestmark = pytest.mark.redis


async def erase_then_scan(url: str, namespace: str, servers: Callable[[], list[RedisServer]]) -> None:
    """Write a subject's values and a bystander's, erase the subject, rewrite every AOF of `servers()`:
    then no file of theirs holds the subject's values, and the bystander's record is still there."""
    store = await open_store(url, namespace)
    try:
        for version in range(3):
            await store.put("user-4711", f"Ada {MARKER} v{version}".encode())
        await store.put("bystander", b"Bob")
        assert any(occurrences(server.data_dir, MARKER) for server in servers())  # the AOF holds every write
        await erase_records(store, ["user-4711"])
        for server in servers():
            await asyncio.to_thread(rewrite_aof, server)
        assert [occurrences(server.data_dir, MARKER) for server in servers()] == [{}] * len(servers())
        assert (await store.get("bystander")) is not None
    finally:
        await store.close()


async def test_after_forget_and_an_aof_rewrite_no_redis_file_holds_the_erased_value() -> None:
    with running_redis_server() as server:
        await erase_then_scan(server.url, "profile", lambda: [server])


async def test_on_a_redis_cluster_after_forget_and_aof_rewrites_no_file_holds_the_erased_value(
    redis_cluster: RedisCluster,
) -> None:
    await erase_then_scan(redis_cluster.url, f"profile{uuid.uuid4().hex[:8]}", redis_cluster.masters)
