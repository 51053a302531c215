"""Reads fall back to snapshots on UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, an exceeded latency budget or an
open circuit breaker; every result says where it came from; without a snapshot the error is typed."""

from __future__ import annotations

import grpc
import pytest

from microstate.client import BreakerOptions, BreakerState, Source
from microstate.client._base import Fallback
from microstate.client._operations import unary
from microstate.client._plans import Plan
from microstate.client.errors import (
    Cancelled,
    CircuitOpenError,
    DeadlineExceeded,
    LatencyBudgetExceeded,
    MicrostateError,
    NoSnapshotError,
    NotFound,
    Unavailable,
)
from microstate.client.profile.v1 import Profile, ProfileClient, Read
from tests.client.conftest import breaker_options, fast_options
from tests.client.harness import RestartableServer, eventually
from tests.client.scripted import ScriptedProfiles, cancelled, unavailable

Scripted = tuple[ScriptedProfiles, RestartableServer]


async def test_server_down_serves_the_snapshot_marked_stale(real_server: RestartableServer) -> None:
    async with ProfileClient(options=fast_options(real_server.target)) as client:
        created = await client.create(Profile(user_id="u1", display_name="One"))
        live = await client.get("u1")
        await real_server.stop()

        read = await client.get("u1")
        assert read.source is Source.SNAPSHOT and read.stale
        assert read.value == live.value and read.etag == created.etag
        assert read.fetched_at == pytest.approx(live.fetched_at, abs=1.0) and read.age >= 0
        assert isinstance(read.fallback_reason, Unavailable)
        assert isinstance(read.fallback_reason.__cause__, grpc.aio.AioRpcError)

        with pytest.raises(NoSnapshotError) as caught:
            await client.get("never-read")
        assert isinstance(caught.value.__cause__, Unavailable)
        assert caught.value.fallback_reason is caught.value.__cause__
        assert caught.value.code is grpc.StatusCode.UNAVAILABLE and caught.value.keys == ("never-read",)

        await real_server.start()  # the same port: reads are live again, same client
        read = await eventually(lambda: client.get("u1"), lambda r: r.source is Source.LIVE)
        assert read.value.display_name == "One"


@pytest.mark.parametrize(
    ("status", "reason", "retry_delay"),
    [(unavailable(), Unavailable, 1.5), (cancelled(), Cancelled, None)],
    ids=["store unavailable", "cancelled by a server going away"],
)
async def test_a_live_server_failing_every_attempt_falls_back(
    scripted: Scripted, status: grpc.Status, reason: type[MicrostateError], retry_delay: float | None
) -> None:
    servicer, server = scripted
    servicer.put("u1", display_name="One")
    async with ProfileClient(options=fast_options(server.target)) as client:
        await client.get("u1")
        servicer.always["GetProfile"] = status
        read = await client.get("u1")
    assert read.stale and read.value.display_name == "One"
    assert isinstance(read.fallback_reason, reason) and read.fallback_reason.retry_delay == retry_delay


async def test_deadline_exceeded_falls_back(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("u1")
    async with ProfileClient(options=fast_options(server.target)) as client:
        await client.get("u1")
        servicer.delay["GetProfile"] = 5.0
        read = await client.get("u1", timeout=0.1)
        assert read.stale and type(read.fallback_reason) is DeadlineExceeded
        with pytest.raises(NoSnapshotError) as caught:
            await client.get("u2", timeout=0.1)
        assert type(caught.value.__cause__) is DeadlineExceeded


async def test_latency_budget_serves_the_snapshot_only_when_there_is_one(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("known", display_name="K")
    servicer.put("new", display_name="N")
    async with ProfileClient(options=fast_options(server.target, latency_budget=0.05)) as client:
        await client.get("known")
        servicer.delay["GetProfile"] = 0.25

        read = await client.get("known")
        assert read.stale and isinstance(read.fallback_reason, LatencyBudgetExceeded)
        assert isinstance(read.fallback_reason, DeadlineExceeded)  # still a deadline, for generic handlers

        # No snapshot to serve: the read waits for the live answer (up to its timeout) instead of failing.
        read = await client.get("new")
        assert read.source is Source.LIVE and read.value.display_name == "N"

        # A per-call budget overrides the client's.
        read = await client.get("known", latency_budget=2.0)
        assert read.source is Source.LIVE


@pytest.mark.parametrize("via", ["get", "batch_get"])
async def test_not_found_drops_the_snapshot(scripted: Scripted, via: str) -> None:
    servicer, server = scripted
    servicer.put("gone")
    async with ProfileClient(options=fast_options(server.target)) as client:
        await client.get("gone")
        del servicer.profiles["gone"]
        if via == "get":
            with pytest.raises(NotFound):
                await client.get("gone")
        else:
            assert (await client.batch_get(["gone"])).missing == ["gone"]
        servicer.always["GetProfile"] = unavailable()
        with pytest.raises(NoSnapshotError):
            await client.get("gone")


async def test_breaker_opens_skips_the_server_and_a_half_open_probe_recovers(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.put("u1", display_name="One")
    async with ProfileClient(options=breaker_options(server.target, reset_timeout=0.2)) as client:
        await client.get("u1")
        servicer.always["GetProfile"] = unavailable()
        for _ in range(2):
            assert isinstance((await client.get("u1")).fallback_reason, Unavailable)
        assert client.breaker_state is BreakerState.OPEN
        calls = servicer.calls["GetProfile"]

        for _ in range(5):
            read = await client.get("u1")
            assert read.stale and isinstance(read.fallback_reason, CircuitOpenError)
        with pytest.raises(NoSnapshotError) as caught:
            await client.get("unknown")
        assert isinstance(caught.value.__cause__, CircuitOpenError)
        assert servicer.calls["GetProfile"] == calls  # nothing reached the server

        # A failing probe opens the breaker again.
        read = await eventually(
            lambda: client.get("u1"), lambda r: not isinstance(r.fallback_reason, CircuitOpenError)
        )
        assert isinstance(read.fallback_reason, Unavailable) and servicer.calls["GetProfile"] == calls + 1
        assert client.breaker_state is BreakerState.OPEN

        # A succeeding probe closes it.
        del servicer.always["GetProfile"]
        read = await eventually(lambda: client.get("u1"), lambda r: r.source is Source.LIVE)
        assert servicer.calls["GetProfile"] == calls + 2 and client.breaker_state is BreakerState.CLOSED


async def test_answers_other_than_availability_failures_keep_the_breaker_closed(scripted: Scripted) -> None:
    _, server = scripted
    options = fast_options(server.target, breaker=BreakerOptions(failure_threshold=1))
    async with ProfileClient(options=options) as client:
        for _ in range(3):
            with pytest.raises(NotFound):
                await client.get("nobody")
        assert client.breaker_state is BreakerState.CLOSED


async def test_batch_falls_back_per_id(scripted: Scripted) -> None:
    servicer, server = scripted
    for user_id in ("a", "b", "c"):
        servicer.put(user_id)
    async with ProfileClient(options=fast_options(server.target)) as client:
        await client.get("a")
        live = await client.batch_get(["b", "gone"])
        assert list(live.found) == ["b"] and live.missing == ["gone"]

        servicer.always["BatchGetProfiles"] = unavailable()
        batch = await client.batch_get(["a", "b", "c"])
        assert list(batch.found) == ["a", "b"] and batch.unavailable == ["c"] and batch.missing == []
        assert batch.stale and all(read.stale for read in batch.found.values())
        assert isinstance(batch.fallback_reason, Unavailable)

        with pytest.raises(NoSnapshotError) as caught:
            await client.batch_get(["c", "d"])
        assert caught.value.keys == ("c", "d")


async def test_writes_never_fall_back(real_server: RestartableServer) -> None:
    async with ProfileClient(options=fast_options(real_server.target)) as client:
        created = await client.create(Profile(user_id="w"))
        await client.get("w")
        await real_server.stop()
        with pytest.raises(Unavailable) as create:
            await client.create(Profile(user_id="w2"))
        with pytest.raises(Unavailable):
            await client.update(created, ["display_name"])
        with pytest.raises(Unavailable):
            await client.delete("w")
        with pytest.raises(Unavailable):
            await client.list()
    assert not isinstance(create.value, NoSnapshotError)
    assert isinstance(create.value.__cause__, grpc.aio.AioRpcError)


async def test_writes_refresh_and_delete_drops_the_snapshot(scripted: Scripted) -> None:
    servicer, server = scripted
    async with ProfileClient(options=fast_options(server.target)) as client:
        await client.create(Profile(user_id="w", display_name="first"))
        await client.update(Profile(user_id="w", display_name="second"))
        servicer.always["GetProfile"] = unavailable()
        read = await client.get("w")
        assert read.stale and read.value.display_name == "second"

        await client.delete("w")
        with pytest.raises(NoSnapshotError):
            await client.get("w")


class FailClosedProfiles(ProfileClient):
    """A client with one read declared fail-closed, as a session check is."""

    @unary
    def check(self, user_id: str) -> Plan[Read[Profile]]:
        return self._core.read(
            self._resource,
            "GetProfile",
            lambda: self._pb.GetProfileRequest(user_id=user_id),
            user_id,
            timeout=None,
            latency_budget=None,
            metadata=self._core.metadata(None),
            fallback=Fallback.NONE,
        )


async def test_a_fail_closed_read_never_serves_or_keeps_a_snapshot(real_server: RestartableServer) -> None:
    options = breaker_options(real_server.target, reset_timeout=60)
    async with ProfileClient(options=options) as writer:  # its snapshots are its own
        await writer.create(Profile(user_id="u2", display_name="Two"))
    async with FailClosedProfiles(options=options) as client:
        await client.create(Profile(user_id="u1", display_name="One"))
        checked = await client.check("u2")
        assert checked.source is Source.LIVE and checked.value.display_name == "Two"
        await real_server.stop()

        with pytest.raises(Unavailable):
            await client.check("u1")  # u1 has a snapshot: a fail-closed read does not use it
        assert (await client.get("u1")).stale  # the same key through the snapshot read: served
        with pytest.raises(NoSnapshotError):
            await client.get("u2")  # what check read live was not kept
        assert client.breaker_state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            await client.check("u1")
