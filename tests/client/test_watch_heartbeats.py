"""WatchProfiles heartbeats, on the wire: sent only when asked, when nothing else was, carrying the last
event's resume token (resuming from one loses nothing); an interval out of range is refused."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from tests.client.harness import RestartableServer

ONE_SECOND = duration_pb2.Duration(seconds=1)


async def test_heartbeats_fill_the_silences_and_carry_the_last_token(real_server: RestartableServer) -> None:
    async with grpc.aio.insecure_channel(real_server.target) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        watch = stub.WatchProfiles(pb.WatchProfilesRequest(heartbeat_interval=ONE_SECOND), timeout=30)
        first = await watch.read()
        assert first.change_type == pb.CHANGE_TYPE_HEARTBEAT and not first.user_id
        await stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="u1")))
        created = await watch.read()
        assert created.change_type == pb.CHANGE_TYPE_CREATED
        after = await watch.read()
        assert after.change_type == pb.CHANGE_TYPE_HEARTBEAT and after.resume_token == created.resume_token
        watch.cancel()

        await stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="u2")))
        resumed = stub.WatchProfiles(pb.WatchProfilesRequest(resume_token=after.resume_token), timeout=30)
        assert (await resumed.read()).user_id == "u2"
        resumed.cancel()


@pytest.mark.parametrize(
    "interval", [duration_pb2.Duration(nanos=999_999_999), duration_pb2.Duration(seconds=3601)]
)
async def test_an_interval_out_of_range_is_refused(real_server: RestartableServer, interval: object) -> None:
    async with grpc.aio.insecure_channel(real_server.target) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        watch = stub.WatchProfiles(pb.WatchProfilesRequest(heartbeat_interval=interval), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await watch.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
