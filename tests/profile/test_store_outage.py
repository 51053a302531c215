"""A store outage reaches clients as a fast UNAVAILABLE with RetryInfo, and the same server recovers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.profile import MICROSTATE
from microstate.server.store import open_store
from tests.support.inproc import serve_in_process
from tests.support.redis_server import running_redis_server
from tests.support.rpc_errors import fails

pytestmark = pytest.mark.redis


async def test_redis_down_is_a_fast_unavailable_with_retry_info_then_it_recovers() -> None:
    with running_redis_server() as redis:
        store = await open_store(redis.url, "profile")
        try:
            async with (
                serve_in_process(MICROSTATE, store) as target,
                grpc.aio.insecure_channel(target) as channel,
            ):
                stub = profile_pb2_grpc.ProfileServiceStub(channel)
                await stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="u1")))
                redis.stop()
                async with asyncio.timeout(5):  # fast: no hang on the dead store
                    await fails(
                        stub.GetProfile(pb.GetProfileRequest(user_id="u1")),
                        grpc.StatusCode.UNAVAILABLE,
                        "STORE_UNAVAILABLE",
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await stub.UpdateProfile(pb.UpdateProfileRequest(profile=pb.Profile(user_id="u1")))
                status = rpc_status.from_call(caught.value)
                assert status is not None
                assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
                redis.start()
                got = await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))
                assert got.user_id == "u1"  # the acknowledged write survived and the same server recovered
        finally:
            await store.close()
