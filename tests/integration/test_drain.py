"""Graceful drain of a real profile server process on SIGTERM.

The server runs with the test-only slow-calls interceptor (tests/support/slow_calls.py), so its unary calls
take SLOW_SECONDS: long enough to still be running when the listener closes after DRAIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from tests.support.processes import ServerProcess, running_server, until
from tests.support.slow_calls import DELAYING

pytestmark = pytest.mark.process

SLOW_SECONDS = 4.0
DRAIN_SECONDS = 1.5
GRACE_SECONDS = 15.0
IN_FLIGHT = 4
PHASES = ["signal", "drain", "stop", "stopped", "closed", "exit"]


def delayed_calls(server: ServerProcess) -> int:
    return sum(record["msg"] == DELAYING for record in server.log_records())


async def check_on_new_connection(target: str) -> str:
    """Health over a fresh channel: answers only while the listener still accepts connections."""
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def get_on_new_connection(target: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await profile_pb2_grpc.ProfileServiceStub(channel).GetProfile(
                pb.GetProfileRequest(user_id="u0"), timeout=5
            )
    code: grpc.StatusCode = refused.value.code()
    return code


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(phase in remaining for phase in wanted)


async def test_sigterm_reports_not_serving_then_finishes_in_flight_calls_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    flags = ("--drain-seconds", str(DRAIN_SECONDS), "--grace-seconds", str(GRACE_SECONDS))
    slow = ("--slow-calls", str(SLOW_SECONDS))
    with running_server("profile", tmp_path, *flags, hooks=slow) as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            profiles = profile_pb2_grpc.ProfileServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

            in_flight = [
                asyncio.ensure_future(
                    profiles.CreateProfile(
                        pb.CreateProfileRequest(
                            profile=pb.Profile(user_id=f"u{i}", display_name=f"User {i}")
                        ),
                        timeout=GRACE_SECONDS,
                    )
                )
                for i in range(IN_FLIGHT)
            ]
            await until(
                lambda: delayed_calls(server) >= IN_FLIGHT, within=10, what="the calls to be in flight"
            )

            server.send(signal.SIGTERM)
            flipped = await asyncio.wait_for(watch.read(), timeout=10)
            assert flipped.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # NOT_SERVING came first: the listener still takes new connections, and says NOT_SERVING on them.
            assert await check_on_new_connection(server.target) == "NOT_SERVING"
            # The Watch is an in-flight call too; left open, it would hold the server for the whole grace.
            watch.cancel()

            # After the drain period the listener closes. A call racing that very instant may get CANCELLED
            # from gRPC core (the reason for draining first), so wait for the steady state, then assert on it.
            async def listener_closed() -> bool:
                return await check_on_new_connection(server.target) == "UNAVAILABLE"

            await until(listener_closed, within=10, what="the listener to close")
            assert "stop" in server.phases(), "the listener closed before the drain ended"
            assert not all(call.done() for call in in_flight), "the slow calls should straddle the stop"
            assert await get_on_new_connection(server.target) == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await profiles.GetProfile(pb.GetProfileRequest(user_id="u0"), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            created = await asyncio.gather(*in_flight)
            assert sorted(profile.user_id for profile in created) == [f"u{i}" for i in range(IN_FLIGHT)]

        assert server.wait() == 0, server.describe()
        assert is_subsequence(PHASES, server.phases()), server.phases()
