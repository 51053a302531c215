"""While the store is down the server keeps evaluating from its rule set in memory; once the store is back,
the rule set follows it again and a replica stream carries on with the next delta."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from microstate.flags.v1 import flags_pb2 as f
from microstate.server.store import open_store
from tests.support.processes import until
from tests.support.redis_server import running_redis_server

from .builders import header_color
from .conftest import serve_flags
from .replica import Replica, follow_until

pytestmark = pytest.mark.redis


async def test_evaluations_outlive_a_store_outage() -> None:
    with running_redis_server() as redis:
        store = await open_store(redis.url, f"flags{uuid.uuid4().hex}", watch_outage_budget=0.5)
        try:
            async with serve_flags(store) as stub:
                created = await stub.CreateFlag(f.CreateFlagRequest(flag=header_color()))
                request = f.EvaluateFlagRequest(
                    key="headerColor", context=f.EvaluationContext(targeting_key="rachel@faas.com")
                )
                assert (await stub.EvaluateFlag(request)).variant == "blue"
                replica = Replica()
                stream = stub.SyncFlags(f.SyncFlagsRequest(), timeout=60)
                await follow_until(stream, replica, lambda: replica.snapshots == 1)

                await asyncio.to_thread(redis.kill)
                answer = await stub.EvaluateFlag(request)
                assert (answer.variant, answer.revision) == ("blue", created.revision)
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await stub.GetFlag(f.GetFlagRequest(key="headerColor"), timeout=10)
                assert down.value.code() == grpc.StatusCode.UNAVAILABLE

                await asyncio.to_thread(redis.start)  # the AOF (fsync always) brings the flag back
                update = f.UpdateFlagRequest(
                    flag=f.Flag(key="headerColor", default_variant="green"),
                    update_mask={"paths": ["default_variant"]},
                )

                async def updated() -> bool:
                    try:
                        await stub.UpdateFlag(update, timeout=5)
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE
                        return False
                    return True

                await until(updated, within=30, what="the store to take writes again")
                await follow_until(
                    stream, replica, lambda: replica.flags["headerColor"].default_variant == "green"
                )
                stream.cancel()
                missing = await stub.EvaluateFlag(f.EvaluateFlagRequest(key="headerColor"))
                assert missing.variant == "green"  # no targeting key: the split gives the default
        finally:
            await store.close()
