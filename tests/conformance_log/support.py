"""Helpers of the log conformance suite: reading a whole log, parking a follower in its wait, and counting
what followers hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from microstate.server.store.log import LogEntry, LogStore
from tests.conformance.conftest import Backend

QUIET = 0.3
"""Seconds a follower is given, with nothing to read, to settle in its wait for new entries."""


async def read_all(log: LogStore, after: str | None = None) -> list[LogEntry]:
    """Every retained entry after `after`, page by page."""
    entries: list[LogEntry] = []
    while True:
        page = await log.read(after, limit=100)
        entries += page.entries
        after = page.cursor
        if not page.more:
            return entries


async def server_handles(backend: Backend, namespace: str) -> int:
    """What followers hold on the server: Redis connections of this namespace's followers (on every node of a
    cluster), Mongo cursors
    open on the server (all of them: a baseline is taken first); 0 for embedded backends."""
    if backend.name.startswith("redis"):
        return sum([await _redis_followers(url, namespace) for url in _node_urls(backend)])
    if backend.name.startswith("mongo"):
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.url)
        try:
            status = await mongo.admin.command("serverStatus")
        finally:
            await mongo.close()
        return int(status["metrics"]["cursor"]["open"]["total"])
    return 0


def _node_urls(backend: Backend) -> list[str]:
    """The Redis server, or every node of the cluster (its URL lists them all)."""
    if backend.name == "redis-cluster":
        return [f"redis://{node}/0" for node in backend.url.removeprefix("redis+cluster://").split(",")]
    return [backend.url]


async def _redis_followers(url: str, namespace: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(c["name"] == f"microstate-log-{namespace}-follow" for c in clients)


async def held(backend: Backend, namespace: str) -> tuple[int, int]:
    """(asyncio tasks of this process, server handles): what an abandoned follower could leak."""
    return len(asyncio.all_tasks()), await server_handles(backend, namespace)


async def parked(follower: AsyncIterator[LogEntry]) -> asyncio.Future[LogEntry]:
    """A pending `anext(follower)`, given QUIET seconds to settle in its wait (done early if it got one)."""
    pending = asyncio.ensure_future(anext(follower))
    await asyncio.wait({pending}, timeout=QUIET)  # the time a follower gets, not a synchronisation
    return pending
