"""A client pinned to a contract version the server does not serve fails at its first call (or at
check_contract) with ContractVersionNotServed naming both versions: never a snapshot, never a breaker trip.

"A server without v2" is the real profile server as it was before v2: the v1 servicer only, behind a
pinning interceptor that serves v1 only (the `v1_only_server` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from microstate.client import BreakerOptions, BreakerState, ContractVersionNotServed, SnapshotOptions, Source
from microstate.client.errors import FailedPrecondition, Unavailable, from_grpc_error
from microstate.client.profile import v1, v2
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import FinishedCall, rich_status

V1 = "microstate.profile.v1"
V2 = "microstate.profile.v2"

CALLS: dict[str, Callable[[v2.ProfileClient], Awaitable[Any]]] = {
    "get": lambda client: client.get("u1"),
    "batch_get": lambda client: client.batch_get(["u1"]),
    "list": lambda client: client.list(),
    "create": lambda client: client.create(v2.Profile(user_id="u1")),
    "update": lambda client: client.update(v2.Profile(user_id="u1")),
    "delete": lambda client: client.delete("u1"),
    "watch": lambda client: anext(client.watch()),
    "check_contract": lambda client: client.check_contract(),
}


def assert_names_both(error: ContractVersionNotServed) -> None:
    assert isinstance(error, FailedPrecondition) and error.reason == "CONTRACT_VERSION_NOT_SERVED"
    assert (error.requested, error.served) == (V2, (V1,))
    assert V2 in str(error) and V1 in str(error)
    assert isinstance(error.__cause__, grpc.RpcError)


@pytest.mark.parametrize("call", list(CALLS))
async def test_every_first_call_names_both_versions(v1_only_server: RestartableServer, call: str) -> None:
    async with v2.ProfileClient(options=fast_options(v1_only_server.target)) as client:
        with pytest.raises(ContractVersionNotServed) as caught:
            await asyncio.wait_for(CALLS[call](client), 5)
    assert_names_both(caught.value)


async def test_a_read_does_not_fall_back_to_its_snapshot_nor_trip_the_breaker(
    real_server: RestartableServer, v1_only_server: RestartableServer, tmp_path: Path
) -> None:
    snapshots = SnapshotOptions(path=str(tmp_path / "v2.snap"))
    async with v2.ProfileClient(options=fast_options(real_server.target, snapshot=snapshots)) as writer:
        await writer.create(v2.Profile(user_id="u1"))  # leaves a v2 snapshot of u1 in the file

    options = fast_options(
        v1_only_server.target, snapshot=snapshots, breaker=BreakerOptions(failure_threshold=1)
    )
    async with v2.ProfileClient(options=options) as client:
        for _ in range(3):
            with pytest.raises(ContractVersionNotServed):
                await client.get("u1")
            with pytest.raises(ContractVersionNotServed):
                await client.batch_get(["u1"])
        assert client.breaker_state is BreakerState.CLOSED
        await v1_only_server.stop()
        read = await client.get("u1")  # the snapshot was there all along, for real availability failures
        assert read.source is Source.SNAPSHOT and isinstance(read.fallback_reason, Unavailable)


async def test_check_contract_passes_where_the_version_is_served(
    real_server: RestartableServer, v1_only_server: RestartableServer
) -> None:
    for target, client_class in (
        (real_server.target, v1.ProfileClient),
        (real_server.target, v2.ProfileClient),
        (v1_only_server.target, v1.ProfileClient),
    ):
        async with client_class(options=fast_options(target)) as client:
            await client.check_contract()  # raises unless served
    async with v1.ProfileClient(options=fast_options(v1_only_server.target)) as legacy:
        assert (await legacy.create(v1.Profile(user_id="old"))).user_id == "old"


async def test_check_contract_does_not_mistake_an_unreachable_server_for_a_served_version(
    real_server: RestartableServer,
) -> None:
    await real_server.stop()
    async with v2.ProfileClient(options=fast_options(real_server.target)) as client:
        with pytest.raises(Unavailable):
            await client.check_contract()


async def test_the_sync_client_fails_the_same_way(v1_only_server: RestartableServer) -> None:
    def calls() -> list[ContractVersionNotServed]:
        errors = []
        with v2.SyncProfileClient(options=fast_options(v1_only_server.target)) as client:
            for call in (client.check_contract, lambda: client.get("u1")):
                with pytest.raises(ContractVersionNotServed) as caught:
                    call()
                errors.append(caught.value)
        return errors

    for error in await asyncio.to_thread(calls):  # the server runs on this loop: block another thread
        assert_names_both(error)


@pytest.mark.parametrize(
    ("code", "domain", "refined"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, "microstate.dev", True),
        (grpc.StatusCode.ABORTED, "microstate.dev", False),  # the reason refines only its own status
        (grpc.StatusCode.FAILED_PRECONDITION, "example.com", False),  # reasons are unique per domain only
    ],
)
def test_only_the_reason_of_its_domain_and_status_maps_to_the_typed_error(
    code: grpc.StatusCode, domain: str, refined: bool
) -> None:
    metadata = {"requested": V2, "served": V1}
    status = rich_status(code, "peer text", "CONTRACT_VERSION_NOT_SERVED", metadata=metadata, domain=domain)
    error = from_grpc_error(FinishedCall(code, "peer text", status.trailing_metadata))
    assert isinstance(error, ContractVersionNotServed) is refined and error.code is code
    assert (V2 in str(error) and V1 in str(error)) is refined
