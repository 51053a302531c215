"""A copy of the store holds no usable token: after sessions are created, retried, refreshed and revoked on
each backend, everything the backend holds for the test's namespace (every SQLite table and page, every
Redis key of every type, every Mongo document as BSON, change logs included; the servers are shared with
other tests, whose data would only slow the search) is searched for every token and secret, in every
encoding tried."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator

import bson
import pymongo
import redis

from microstate.server.session.domain import Issued, NewSession, SessionDomain
from microstate.server.session.tokens import REFRESH_TOKEN, SESSION_TOKEN
from microstate.server.store.sqlite import database_path
from tests.conformance.conftest import Backend
from tests.session.conftest import Clock


def sqlite_dump(url: str, namespace: str) -> Iterator[bytes]:  # the file is this test's alone
    with sqlite3.connect(database_path(url)) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    yield value if isinstance(value, bytes) else str(value).encode()
    with open(database_path(url), "rb") as file:  # the pages themselves, free pages and all
        yield file.read()


def redis_dump(url: str, namespace: str) -> Iterator[bytes]:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            yield key
            kind = client.type(key).decode()
            if kind == "string":
                yield client.get(key) or b""
            elif kind == "hash":
                for field, value in client.hgetall(key).items():
                    yield field + b"=" + value
            elif kind == "zset":
                yield from (member for member, _ in client.zrange(key, 0, -1, withscores=True))
            elif kind == "stream":
                for entry_id, fields in client.xrange(key):
                    yield entry_id + b"".join(name + b"=" + value for name, value in fields.items())
            elif kind == "list":
                yield from client.lrange(key, 0, -1)
            elif kind == "set":
                yield from client.smembers(key)
            elif kind == "none":
                continue  # expired or deleted since SCAN listed it (another test's TTL record)
            else:
                raise AssertionError(f"unexpected Redis type {kind} of {key!r}")
    finally:
        client.close()


def mongo_dump(url: str, namespace: str) -> Iterator[bytes]:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(url, directConnection=True)
    try:
        for database in client.list_database_names():
            for collection in client[database].list_collection_names():
                query = {} if namespace in collection else {"_id": namespace}  # bookkeeping is per namespace
                for document in client[database][collection].find(query):
                    yield bson.encode(document)
    finally:
        client.close()


def redis_cluster_dump(url: str, namespace: str) -> Iterator[bytes]:
    """Every node's keys (the URL lists them all: the test cluster's redis+cluster://host:port,...)."""
    for address in url.removeprefix("redis+cluster://").split(","):
        yield from redis_dump(f"redis://{address}/0", namespace)


DUMPS = {
    "sqlite": sqlite_dump,
    "redis": redis_dump,
    "redis-cluster": redis_cluster_dump,
    "mongo": mongo_dump,
    "mongo-external": mongo_dump,
}


def encodings(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret)
    urlsafe = base64.urlsafe_b64encode(secret)
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        b64,
        b64.rstrip(b"="),
        urlsafe,
        urlsafe.rstrip(b"="),
        base64.b32encode(secret),
        # A part of a secret is enough to narrow a search: no 12-byte window of it may appear either.
        *(secret[start : start + 12] for start in range(0, len(secret) - 11, 4)),
    ]


async def test_no_backend_holds_a_usable_token(
    domain: SessionDomain, clock: Clock, backend: Backend, namespace: str
) -> None:
    issued: list[Issued] = []
    for index in range(5):
        created = await domain.create(NewSession(f"user{index}", scopes=["read"], request_id=f"req-{index}"))
        issued += [
            created,
            await domain.create(NewSession(f"user{index}", scopes=["read"], request_id=f"req-{index}")),
        ]
        refreshed = await domain.refresh(created.refresh_token)  # leaves a sealed successor in the record
        issued += [refreshed, await domain.refresh(created.refresh_token)]
        issued.append(await domain.refresh(refreshed.refresh_token))
    unrefreshed = await domain.create(
        NewSession("keeper", request_id="kept")
    )  # keeps its sealed first tokens
    issued.append(unrefreshed)
    await domain.revoke(issued[0].session.data.session_id)
    await domain.revoke_user("user1")

    blob = b"\n".join(DUMPS[backend.name](backend.url, namespace))

    assert len(blob) > 10_000  # the dump did find the data
    assert issued[0].session.data.session_id.encode() in blob  # session ids are not secret
    lowered = blob.lower()
    for session in issued:
        for token, kind in ((session.token, SESSION_TOKEN), (session.refresh_token, REFRESH_TOKEN)):
            assert token.encode() not in blob
            assert token[36:79].encode() not in blob  # the secret as the token spells it
            for needle in encodings(kind.parse(token).secret):
                assert needle not in blob and needle.lower() not in lowered
    assert b"mss_" not in blob and b"msr_" not in blob
