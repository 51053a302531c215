"""What is specific to the MongoDB log store: the polling fallback where change streams are unavailable.
The behaviour every backend shares is in tests/conformance_log/."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import aclosing

import pytest

from microstate.server.store.log.mongo import MongoLog
from tests.conformance.waiting import DEADLINE, take
from tests.conformance_log.support import parked
from tests.support.mongo_server import running_mongo_server

pytestmark = pytest.mark.mongo


async def test_without_change_streams_a_follower_polls_the_log() -> None:
    with running_mongo_server(standalone=True) as server:
        namespace = f"t-{uuid.uuid4().hex[:12]}"
        follower = await MongoLog.open(server.url, namespace, poll_interval=0.1)
        writer = await MongoLog.open(server.url, namespace)
        try:
            async with aclosing(follower.follow()) as entries:
                pending = await parked(entries)  # waiting for appends, the way it can on this server
                appended = [await writer.append([f"{i}".encode()]) for i in range(3)]
                seen = [await asyncio.wait_for(pending, DEADLINE), *await take(entries, 2)]
            assert not follower._change_streams, "the server has change streams: this tested nothing"
        finally:
            await follower.close()
            await writer.close()

    assert [e.position for e in seen] == [a.positions[0] for a in appended]
