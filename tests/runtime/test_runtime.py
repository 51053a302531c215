"""The shared runtime in this process: the real profile microstate over real stores, spoken to over gRPC."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from microstate.client import CONTRACT_METADATA_KEY
from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server import probe
from microstate.server.config import ServerConfig
from microstate.server.profile import MICROSTATE
from microstate.server.runtime import Endpoint, Runtime, server_options
from microstate.server.store import Store, StoreMisconfigured, open_store
from microstate.server.store.roles import Stores
from tests.support.processes import until
from tests.support.redis_server import RedisServer, running_redis_server
from tests.support.server_process import free_port

PROFILE_SERVICE = "microstate.profile.v1.ProfileService"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'profile.db'}", "profile")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def serving(store: Store, **settings: Any) -> AsyncIterator[Runtime]:
    """A started runtime on a free loopback port; drained (no waiting) afterwards."""
    config = ServerConfig(**{"port": 0, "drain_seconds": 0.0, "grace_seconds": 0.0, **settings})
    runtime = Runtime(MICROSTATE, Stores.of(store), config)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.drain()


def target(runtime: Runtime) -> str:
    assert runtime.endpoint is not None
    return runtime.endpoint.target


async def test_health_reports_serving_for_the_server_and_each_service(sqlite_store: Store) -> None:
    async with serving(sqlite_store) as runtime, grpc.aio.insecure_channel(target(runtime)) as channel:
        assert runtime.endpoint is not None and runtime.endpoint.port > 0
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *MICROSTATE.service_names):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_microstate_health_and_reflection(sqlite_store: Store) -> None:
    async with serving(sqlite_store) as runtime, grpc.aio.insecure_channel(target(runtime)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [response async for response in stub.ServerReflectionInfo(iter([request]), timeout=5)]
        listed = {service.name for service in responses[0].list_services_response.service}
        assert listed == {*MICROSTATE.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME}

        # Reflection also serves the contract itself, so grpcurl-style tools can build requests.
        by_symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=PROFILE_SERVICE)
        async for response in stub.ServerReflectionInfo(iter([by_symbol]), timeout=5):
            assert response.file_descriptor_response.file_descriptor_proto


async def test_messages_over_the_limit_are_refused_with_resource_exhausted(sqlite_store: Store) -> None:
    async with (
        serving(sqlite_store, max_message_bytes=2048) as runtime,
        grpc.aio.insecure_channel(target(runtime)) as channel,
    ):
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        small = pb.Profile(user_id="small", display_name="fits")
        await stub.CreateProfile(pb.CreateProfileRequest(profile=small), timeout=5)

        big = pb.Profile(user_id="big", embedding=[0.5] * 1024)  # ~4 KiB on the wire
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await stub.CreateProfile(pb.CreateProfileRequest(profile=big), timeout=5)
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Refused at the transport: nothing was stored, and the server keeps serving.
        assert await stub.GetProfile(pb.GetProfileRequest(user_id="small"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as absent:
            await stub.GetProfile(pb.GetProfileRequest(user_id="big"), timeout=5)
        assert absent.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_runtime_refuses_contract_versions_it_does_not_serve(sqlite_store: Store) -> None:
    async with serving(sqlite_store) as runtime, grpc.aio.insecure_channel(target(runtime)) as channel:
        get_v9 = channel.unary_unary(
            "/microstate.profile.v9.ProfileService/GetProfile",
            request_serializer=pb.GetProfileRequest.SerializeToString,
        )
        pinned = ((CONTRACT_METADATA_KEY, "microstate.profile.v9"),)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_v9(pb.GetProfileRequest(user_id="u1"), metadata=pinned)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "microstate.profile.v9" in str(caught.value.details())


async def test_a_taken_port_fails_clearly_instead_of_being_shared(sqlite_store: Store) -> None:
    async with serving(sqlite_store) as first:
        assert first.endpoint is not None
        second = Runtime(MICROSTATE, Stores.of(sqlite_store), ServerConfig(port=first.endpoint.port))
        with pytest.raises(OSError, match=str(first.endpoint.port)):
            await second.start()


@asynccontextmanager
async def serving_over(redis: RedisServer, health_interval: float = 0.05) -> AsyncIterator[str]:
    """The runtime over a store on `redis`, pinging it every `health_interval` seconds; yields the target."""
    store = await open_store(redis.url, "profile")  # opening does not contact Redis
    try:
        async with serving(store, health_interval_seconds=health_interval) as runtime:
            yield target(runtime)
    finally:
        await store.close()


async def statuses(server: str) -> set[str]:
    """The distinct health statuses of the server ("") and each of its services."""
    return set((await probe.check_all(server, list(MICROSTATE.service_names))).values())


async def until_status(server: str, wanted: str) -> None:
    async def reached() -> bool:
        return await statuses(server) == {wanted}

    await until(reached, within=10, what=f"health {wanted} for the server and every service")


@pytest.mark.redis
async def test_health_follows_the_store_down_and_back_up() -> None:
    with running_redis_server() as redis:
        async with serving_over(redis) as server:
            assert await statuses(server) == {"SERVING"}
            redis.stop()
            await until_status(server, "NOT_SERVING")
            redis.start()
            await until_status(server, "SERVING")


@pytest.mark.redis
async def test_a_store_down_at_start_means_listening_but_not_serving_until_it_answers() -> None:
    with running_redis_server() as redis:
        redis.stop()
        async with serving_over(redis) as server:
            assert await statuses(server) == {"NOT_SERVING"}
            redis.start()
            await until_status(server, "SERVING")


@pytest.mark.redis
async def test_a_recovered_store_shows_in_health_at_once_whatever_the_health_interval() -> None:
    """Clients take a replica back when its health does: a store that was down is pinged often, not every
    --health-interval-seconds (an hour here)."""
    with running_redis_server() as redis:
        redis.stop()
        async with serving_over(redis, health_interval=3600) as server:
            assert await statuses(server) == {"NOT_SERVING"}
            redis.start()
            await until_status(server, "SERVING")


@pytest.mark.redis
async def test_a_store_that_refuses_its_configuration_fails_the_start_before_listening(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    store = await open_store(f"redis://127.0.0.1:{redis_server.port}/999", "profile")
    try:
        runtime = Runtime(MICROSTATE, store, ServerConfig(port=port))
        with pytest.raises(StoreMisconfigured, match="DB index is out of range"):
            await runtime.start()
    finally:
        await store.close()
    with socket.socket() as probe_socket:  # nothing was left listening on the port
        assert probe_socket.connect_ex(("127.0.0.1", port)) != 0


def test_limits_become_grpc_core_options() -> None:
    options = dict(server_options(ServerConfig(max_message_bytes=1234, keepalive_time_seconds=30.0)))
    assert options["grpc.max_send_message_length"] == options["grpc.max_receive_message_length"] == 1234
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.so_reuseport"] == 0
    assert "grpc.max_connection_age_ms" not in options
    aged = dict(server_options(ServerConfig(max_connection_age_seconds=60.0, grace_seconds=5.0)))
    assert (aged["grpc.max_connection_age_ms"], aged["grpc.max_connection_age_grace_ms"]) == (60_000, 5_000)


def test_wildcard_endpoints_are_dialled_over_loopback() -> None:
    assert Endpoint("0.0.0.0", 5).target == "127.0.0.1:5"
    assert Endpoint("::", 5).target == "[::1]:5"
    assert str(Endpoint("10.0.0.1", 5)) == "10.0.0.1:5"


async def test_stopping_ends_open_watch_streams_cleanly_instead_of_waiting_out_the_grace(
    sqlite_store: Store,
) -> None:
    config = ServerConfig(port=0, drain_seconds=0.0, grace_seconds=60.0)
    runtime = Runtime(MICROSTATE, Stores.of(sqlite_store), config)
    await runtime.start()
    async with grpc.aio.insecure_channel(target(runtime)) as channel:
        watch = profile_pb2_grpc.ProfileServiceStub(channel).WatchProfiles(pb.WatchProfilesRequest())
        await watch.initial_metadata()
        async with asyncio.timeout(20):  # far below the 60 s grace: the stream must not hold the stop
            await runtime.drain()
            assert await watch.read() is grpc.aio.EOF
        assert await watch.code() == grpc.StatusCode.OK
