"""The Redis store over TLS (`rediss://`), against a real redis-server that answers TLS only. TLS connections
have no pipeline (redis_pipeline.py leaves them to redis-py), so every command takes redis-py's path here: the
same reads, writes, listing and watch must work, and the server's certificate must really be checked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from microstate.server.store import StoreMisconfigured, StoreUnavailable, open_store
from tests.support.redis_server import TlsRedisServer, running_tls_redis_server

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedisServer]:
    with running_tls_redis_server() as server:
        yield server


async def test_reads_writes_lists_and_watches_work_over_tls(tls_redis: TlsRedisServer) -> None:
    store = await open_store(tls_redis.url, f"tls-{uuid.uuid4().hex[:12]}")
    changes = store.watch(after=await store.head_cursor())
    try:
        written = await store.put("a", b"1", ttl=60)
        assert await store.get("a") == written
        assert await store.batch_get(["a", "absent", "a"]) == {"a": written}
        assert (await store.list()).records == [written]
        change = await asyncio.wait_for(anext(changes), 10)
        assert change.record == written
        assert await store.delete("a", if_match=written.revision)
        assert await store.get("a") is None
        await store.ping()
    finally:
        await changes.aclose()
        await store.close()


async def test_a_database_the_server_does_not_have_is_misconfigured_over_tls_too(
    tls_redis: TlsRedisServer,
) -> None:
    """redis-py (not the pipeline) opens TLS connections: its refusal must be read the same way."""
    store = await open_store(tls_redis.url.replace("/0?", "/999?"), "tls-no-such-db")
    try:
        with pytest.raises(StoreMisconfigured, match="DB index is out of range"):
            await store.ping()
    finally:
        await store.close()


async def test_a_certificate_the_client_cannot_verify_is_refused(tls_redis: TlsRedisServer) -> None:
    unverifiable = tls_redis.url.partition("?")[0]  # without the CA that signed the server's certificate
    store = await open_store(unverifiable, "tls-unverified")
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate"):
            await store.ping()
    finally:
        await store.close()
