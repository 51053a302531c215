"""What is specific to the Redis log store: its keys, recovering lost bookkeeping, and data lost under a
follower. The behaviour every backend shares is in tests/conformance_log/."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from microstate.server.store.log import CursorExpired
from microstate.server.store.log.redis import RedisLog
from tests.conformance.waiting import take
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def log(redis_server: RedisServer) -> AsyncIterator[RedisLog]:
    log = await RedisLog.open(redis_server.url, f"t-{uuid.uuid4().hex[:12]}", follow_block=0.2)
    yield log
    await log.close()


async def test_every_key_of_a_log_shares_the_records_store_hash_tag(
    log: RedisLog, raw: aioredis.Redis
) -> None:
    await log.append([b"v"], dedupe_key="k")

    keys = [key async for key in raw.scan_iter(match=f"msl:{{{log.namespace}}}:*")]

    assert len(keys) == 3  # entries, bookkeeping, one dedupe key
    assert {key_slot(key) for key in keys} == {key_slot(f"ms:{{{log.namespace}}}:rev".encode())}
    assert 0 < await raw.pttl(f"msl:{{{log.namespace}}}:key:k") <= 600_000


async def test_appends_continue_after_the_stream_if_the_bookkeeping_is_lost(
    log: RedisLog, raw: aioredis.Redis
) -> None:
    await log.append([b"a", b"b"])
    await raw.delete(f"msl:{{{log.namespace}}}:meta")  # evicted, or deleted by hand

    appended = await log.append([b"c"])

    assert appended.positions == range(3, 4)
    assert await log.head() == "3"


async def test_a_follower_whose_entries_were_lost_is_told_so(log: RedisLog, raw: aioredis.Redis) -> None:
    await log.append([b"a", b"b"])
    async with aclosing(log.follow()) as entries:
        await take(entries, 2)
        # What a restart without persistence does: the log and its bookkeeping are gone.
        await raw.delete(f"msl:{{{log.namespace}}}:meta", f"msl:{{{log.namespace}}}:entries")

        with pytest.raises(CursorExpired):
            await take(entries, 1)
