"""`--metrics-port`: a real server process scraped over HTTP, with a real Redis killed under it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from tests.support.metrics import Samples, sample, scrape
from tests.support.processes import START_TIMEOUT, running_server, wait_for
from tests.support.redis_server import RedisServer, running_redis_server

pytestmark = pytest.mark.process

SERVICE = "microstate.profile.v1.ProfileService"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server


def test_metrics_count_calls_by_code_streams_store_operations_and_health(
    tmp_path: Path, redis: RedisServer
) -> None:
    flags = ("--store", redis.url, "--metrics-port", "0", "--health-interval-seconds", "0.2")
    with (
        running_server("profile", tmp_path, *flags) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="u1")), timeout=10)
        for _ in range(3):
            stub.GetProfile(pb.GetProfileRequest(user_id="u1"), timeout=10)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetProfile(pb.GetProfileRequest(user_id="nobody"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        calls = "microstate_rpc_calls_total"

        # An aborted call's status reaches the client before the server's handler unwinds and counts it.
        def not_found_counted() -> Samples | None:
            samples = scrape(server)
            return (
                samples
                if sample(samples, calls, service=SERVICE, method="GetProfile", code="NOT_FOUND")
                else None
            )

        samples = wait_for(not_found_counted, within=START_TIMEOUT, what="the NOT_FOUND call counted")
        assert sample(samples, calls, service=SERVICE, method="GetProfile", code="OK") == 3
        assert sample(samples, calls, service=SERVICE, method="GetProfile", code="NOT_FOUND") == 1
        assert sample(samples, calls, service=SERVICE, method="CreateProfile", code="OK") == 1
        latency = "microstate_rpc_duration_seconds_count"
        assert sample(samples, latency, service=SERVICE, method="GetProfile") == 4
        assert sample(
            samples, "microstate_store_operation_duration_seconds_count", role="records", operation="put"
        )
        assert sample(samples, "microstate_health_serving", service=SERVICE) == 1

        watch = stub.WatchProfiles(pb.WatchProfilesRequest(), timeout=60)
        open_streams = "microstate_rpc_open_streams"
        wait_for(
            lambda: sample(scrape(server), open_streams, service=SERVICE, method="WatchProfiles") == 1,
            within=START_TIMEOUT,
            what="the watch counted as open",
        )
        watch.cancel()
        wait_for(
            lambda: sample(scrape(server), open_streams, service=SERVICE, method="WatchProfiles") == 0,
            within=START_TIMEOUT,
            what="the cancelled watch counted as closed",
        )
        assert sample(scrape(server), calls, service=SERVICE, method="WatchProfiles", code="CANCELLED") == 1

        redis.kill()
        with pytest.raises(grpc.RpcError) as down:
            stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="u2")), timeout=10)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE

        def store_down() -> Samples | None:
            samples = scrape(server)
            return samples if sample(samples, "microstate_health_serving", service="(server)") == 0 else None

        after = wait_for(store_down, within=START_TIMEOUT, what="health 0 once the store is gone")
        assert sample(after, calls, service=SERVICE, method="CreateProfile", code="UNAVAILABLE") == 1
        errors = [
            value
            for (name, _), value in after.items()
            if name == "microstate_store_errors_total" and value > 0
        ]
        assert errors, "a failed store call must be counted"


def test_metrics_are_off_unless_asked(tmp_path: Path) -> None:
    with running_server("profile", tmp_path) as server:
        assert server.ready["metrics_port"] is None
