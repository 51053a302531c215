"""The Redis store over TLS (`rediss://`), against a real redis-server that answers TLS only. Commands take
the same multiplexed connection as on plain TCP (redis_pipeline.py), wrapped in the SSLContext redis-py would
build from the URL's ssl_* parameters; the blocking watch reads stay on redis-py. Both must check the server's
certificate, and present a client certificate when the URL names one (mutual TLS)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from microstate.server.store import StoreMisconfigured, StoreUnavailable, open_store
from tests.support.redis_server import (
    MutualTlsRedisServer,
    TlsRedisServer,
    running_mutual_tls_redis_server,
    running_tls_redis_server,
)

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedisServer]:
    with running_tls_redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def mutual_tls_redis() -> Iterator[MutualTlsRedisServer]:
    with running_mutual_tls_redis_server() as server:
        yield server


def namespace() -> str:
    return f"tls-{uuid.uuid4().hex[:12]}"


def without(url: str, *names: str) -> str:
    """`url` without the query parameters `names`."""
    base, _, query = url.partition("?")
    kept = [part for part in query.split("&") if part.partition("=")[0] not in names]
    return base + ("?" + "&".join(kept) if kept else "")


async def test_reads_writes_lists_and_watches_work_over_tls(tls_redis: TlsRedisServer) -> None:
    store = await open_store(tls_redis.url, namespace())
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


async def test_commands_take_the_pipelined_connection_over_tls(tls_redis: TlsRedisServer) -> None:
    """Every command but the watch reads goes over the one multiplexed connection, as on plain TCP: the
    server sees one connection of this store, the pipeline's, none of redis-py's pool (~10x the CPU)."""
    ns = namespace()
    store = await open_store(tls_redis.url, ns)
    try:
        written = await store.put("a", b"1")
        await asyncio.gather(*(store.get("a") for _ in range(20)), store.batch_get(["a", "b"]), store.list())
        await store.put("a", b"2", if_match=written.revision)
        await store.delete("a")
        await store.ping()

        names = [client["name"] for client in tls_redis.client().client_list()]
        store_connections = [name for name in names if name.startswith(f"microstate-{ns}")]
        assert store_connections == [f"microstate-{ns}-pipeline"]
    finally:
        await store.close()


async def test_a_certificate_the_client_cannot_verify_is_refused(tls_redis: TlsRedisServer) -> None:
    # Without the CA that signed the server's certificate:
    unverifiable = without(tls_redis.url, "ssl_ca_certs")
    store = await open_store(unverifiable, namespace())
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate verify failed"):
            await store.ping()
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate verify failed"):
            await store.put("a", b"1")
    finally:
        await store.close()


async def test_ssl_cert_reqs_none_skips_verification_as_in_redis_py(tls_redis: TlsRedisServer) -> None:
    """The URL's ssl_* parameters mean what they mean to redis-py, here on the pipelined connection too."""
    unverified = f"{without(tls_redis.url, 'ssl_ca_certs')}?ssl_cert_reqs=none"
    store = await open_store(unverified, namespace())
    try:
        written = await store.put("a", b"1")
        assert await store.get("a") == written
    finally:
        await store.close()


async def test_unusable_tls_settings_are_refused_at_open(tls_redis: TlsRedisServer) -> None:
    with pytest.raises(ValueError, match="unusable TLS settings"):
        missing_ca = f"{without(tls_redis.url, 'ssl_ca_certs')}?ssl_ca_certs=/no/such/ca.pem"
        await open_store(missing_ca, namespace())


async def test_mutual_tls_presents_the_client_certificate_the_url_names(
    mutual_tls_redis: MutualTlsRedisServer,
) -> None:
    store = await open_store(mutual_tls_redis.url, namespace())
    changes = store.watch(after=await store.head_cursor())
    try:
        written = await store.put("a", b"1")
        assert await store.get("a") == written
        assert (await asyncio.wait_for(anext(changes), 10)).record == written  # redis-py's connection too
    finally:
        await changes.aclose()
        await store.close()


async def test_mutual_tls_without_a_client_certificate_is_refused(
    mutual_tls_redis: MutualTlsRedisServer,
) -> None:
    store = await open_store(without(mutual_tls_redis.url, "ssl_certfile", "ssl_keyfile"), namespace())
    try:
        with pytest.raises(StoreUnavailable):
            await store.put("a", b"1")
    finally:
        await store.close()
