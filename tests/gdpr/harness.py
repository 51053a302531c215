"""Every registered microstate served in this process on SQLite files under one directory, as `microstate up`
lays them out (receipts included), for the GDPR tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pymongo
import redis
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from microstate.server import registry
from microstate.server.kit import subjects
from microstate.server.session import KEY_FILE_ENV
from microstate.server.session.tokens import create_key_file
from microstate.server.store.roles import open_stores, role_urls
from tests.support.inproc import serve_in_process
from tests.support.processes import wait_for
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

MARKER = "Zq7GdprMarker"
"""In every value of the subject's data: a scan for it finds what erasure left behind."""
SUBJECT = "user-4711"
WITHIN = 20.0
"""Seconds a condition of the GDPR tests may take (a loaded machine)."""
RAW = CodecOptions(document_class=RawBSONDocument)


def session_key_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / "session.key"
    create_key_file(path)
    return {KEY_FILE_ENV: str(path)}


@contextlib.asynccontextmanager
async def serve_all(
    data_dir: Path, interceptors: Sequence[grpc.aio.ServerInterceptor] = (), *, store: str | None = None
) -> AsyncIterator[dict[str, str]]:
    """name -> target of every registered microstate (the session key must be in the environment); each on
    `store` when given (as `--store`: its other roles follow it where their kind has that backend)."""
    async with contextlib.AsyncExitStack() as stack:
        targets: dict[str, str] = {}
        for name in registry.names():
            microstate = registry.get(name)
            urls = role_urls(name, microstate.stores, store, {}, data_dir)
            stores = await open_stores(name, microstate.stores, urls)
            stores = await subjects.with_receipts(stores, name, urls[microstate.stores[0].name])
            stack.push_async_callback(stores.close)
            targets[name] = await stack.enter_async_context(
                serve_in_process(microstate, stores, interceptors=interceptors)
            )
        yield targets


def occurrences(folder: Path, needle: str) -> dict[str, int]:
    """Every file under `folder` holding `needle` (as UTF-8 bytes), with how often."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (count := path.read_bytes().count(needle.encode())):
            found[str(path.relative_to(folder))] = count
    return found


def rewrite_aof(server: RedisServer) -> None:
    """BGREWRITEAOF on `server`, returning once it finished."""
    client = redis.Redis(port=server.port)
    try:
        client.bgrewriteaof()

        def rewritten() -> bool:
            info = client.info("persistence")
            return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

        wait_for(rewritten, within=WITHIN, what="the AOF rewrite to finish")
    finally:
        client.close()


def keys_holding(cluster: RedisCluster, needle: str) -> dict[str, int]:
    """Every key on the cluster's masters whose name or value (DUMP: what an RDB would write) holds
    `needle`, with how often."""
    found = {}
    for node in cluster.masters():
        client = cluster.client(node)
        try:
            for key in client.scan_iter(count=1000):
                count = (key + (client.dump(key) or b"")).count(needle.encode())  # type: ignore[operator]
                if count:
                    found[key.decode()] = count
        finally:
            client.close()
    return found


def documents_holding(url: str, needle: str) -> dict[str, int]:
    """Every collection ("database.collection") of the Mongo server at `url` whose documents (as BSON)
    hold `needle`, with how often."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(url)
    found = {}
    try:
        for database in client.list_database_names():
            for name in client[database].list_collection_names():
                raw = client[database].get_collection(name, codec_options=RAW)
                count = sum(document.raw.count(needle.encode()) for document in raw.find())
                if count:
                    found[f"{database}.{name}"] = count
    finally:
        client.close()
    return found
