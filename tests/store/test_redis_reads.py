"""The Redis store's batch read (store/redis.py, one MULTI/EXEC over the pipelined connection): keys that a
protocol encoder or the record-key prefix might mangle come back exactly, in request order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from microstate.server.store.redis import RedisStore
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    redis_server.start()  # heals a server another test left stopped
    opened = await RedisStore.open(redis_server.url, f"reads-{uuid.uuid4().hex[:12]}")
    yield opened
    await opened.close()


# Characters JSON escapes or that need care on the way into Lua: quotes, backslashes, control
# characters, NUL, non-ASCII, characters outside the BMP, and keys that look like JSON themselves.
ODD_KEYS = [
    'a"b',
    "back\\slash",
    "new\nline",
    "nul\x00byte",
    "\x7f\x01",
    "é-ü",
    "emoji-😀",
    "\u2028",
    "[1]",
    "null",
]


async def test_odd_keys_read_back_in_request_order(store: RedisStore) -> None:
    for index, key in enumerate(ODD_KEYS):
        await store.put(key, f"value {index}".encode())
    found = await store.batch_get(["absent", *reversed(ODD_KEYS), ODD_KEYS[0]])
    assert list(found) == list(reversed(ODD_KEYS))
    assert [found[key].value for key in ODD_KEYS] == [f"value {i}".encode() for i in range(len(ODD_KEYS))]
    for key in ODD_KEYS:
        assert await store.get(key) == found[key]


async def test_values_with_the_record_separator_read_back_exactly(store: RedisStore) -> None:
    """A record is stored as `revision:expiry:value`: a value full of colons must not confuse the reader."""
    values = {"empty": b"", "colon": b":", "colons": b"1:2:3", "binary": bytes(range(256)), "ttl": b"::x::"}
    written = {
        key: await store.put(key, value, ttl=60 if key == "ttl" else None) for key, value in values.items()
    }
    assert await store.batch_get(list(values)) == written
    assert {record.key: record for record in (await store.list()).records} == written
