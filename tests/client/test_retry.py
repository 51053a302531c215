"""Retries come from the channel's service config: reads retry UNAVAILABLE and CANCELLED up to the bound;
writes retry only a CANCELLED that came before any response headers (the call never reached a handler)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import grpc
import pytest

from microstate.client import ClientOptions, RetryPolicy
from microstate.client._channel import channel_arguments, service_config
from microstate.client.errors import Cancelled, InvalidArgument, NoSnapshotError, Unavailable
from microstate.client.profile.v1 import CONTRACT, Profile, ProfileClient, Source
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles, cancelled, rich_status, unavailable

Scripted = tuple[ScriptedProfiles, RestartableServer]


@pytest.mark.parametrize("status", [unavailable(), cancelled()], ids=["UNAVAILABLE", "CANCELLED"])
async def test_a_read_is_retried_until_it_succeeds(scripted: Scripted, status: grpc.Status) -> None:
    servicer, server = scripted
    servicer.put("u1")
    servicer.fail("GetProfile", status, times=2)
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(3, 0.01, 0.02))) as client:
        read = await client.get("u1")
    assert read.source is Source.LIVE and servicer.calls["GetProfile"] == 3


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_retries_stop_at_the_bound(scripted: Scripted, max_attempts: int) -> None:
    servicer, server = scripted
    servicer.always["BatchGetProfiles"] = unavailable()
    options = fast_options(server.target, retry=RetryPolicy(max_attempts, 0.01, 0.02))
    async with ProfileClient(options=options) as client:
        with pytest.raises(NoSnapshotError) as caught:
            await client.batch_get(["u1"])
    assert isinstance(caught.value.__cause__, Unavailable)
    assert servicer.calls["BatchGetProfiles"] == max_attempts


async def test_a_read_is_not_retried_on_other_errors(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.always["ListProfiles"] = rich_status(grpc.StatusCode.INVALID_ARGUMENT, "bad token", "BAD_TOKEN")
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(InvalidArgument):
            await client.list(page_token="junk")
    assert servicer.calls["ListProfiles"] == 1


WRITES = ["CreateProfile", "UpdateProfile", "DeleteProfile"]


def write_call(client: ProfileClient, write: str) -> Callable[[], Awaitable[object]]:
    return {
        "CreateProfile": lambda: client.create(Profile(user_id="x")),
        "UpdateProfile": lambda: client.update(Profile(user_id="x")),
        "DeleteProfile": lambda: client.delete("x"),
    }[write]


SENT_AGAIN_IF_LOST = {"CreateProfile": 2, "UpdateProfile": 2, "DeleteProfile": 1}
"""How often each write is sent when every answer is lost: gRPC never retries a write on UNAVAILABLE; the SDK
sends the ones that carry a request id (creates and updates; deletes only with must_exist=False) once more."""


@pytest.mark.parametrize("write", WRITES)
async def test_writes_are_sent_again_on_unavailable_only_with_a_request_id(
    scripted: Scripted, write: str
) -> None:
    servicer, server = scripted
    servicer.fail(write, unavailable(), times=2)
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(5, 0.01, 0.02))) as client:
        call = write_call(client, write)
        with pytest.raises(Unavailable):
            await call()
        assert servicer.calls[write] == SENT_AGAIN_IF_LOST[write]


@pytest.mark.parametrize("write", WRITES)
async def test_a_write_cancelled_before_response_headers_is_retried(scripted: Scripted, write: str) -> None:
    servicer, server = scripted
    servicer.fail(write, cancelled(), times=2)
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(3, 0.01, 0.02))) as client:
        await write_call(client, write)()
    assert servicer.calls[write] == 3


@pytest.mark.parametrize("write", WRITES)
async def test_a_write_cancelled_after_its_headers_is_not_retried_by_grpc(
    scripted: Scripted, write: str
) -> None:
    servicer, server = scripted
    servicer.headers_first.add(write)
    servicer.fail(write, cancelled(), times=2)
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(5, 0.01, 0.02))) as client:
        with pytest.raises(Cancelled):
            await write_call(client, write)()
    assert servicer.calls[write] == SENT_AGAIN_IF_LOST[write]


def test_service_config_retries_reads_on_unavailable_and_cancelled_and_writes_on_cancelled() -> None:
    config = json.loads(
        service_config(CONTRACT.service, CONTRACT.idempotent_methods, RetryPolicy(4, 0.1, 2.5, 3))
    )
    writes, reads = config["methodConfig"]
    backoff = {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "2.5s", "backoffMultiplier": 3}
    # The service-wide entry covers every method the read entry does not name: the writes.
    assert writes["name"] == [{"service": CONTRACT.service}]
    assert writes["retryPolicy"] == {**backoff, "retryableStatusCodes": ["CANCELLED"]}
    assert {n["method"] for n in reads["name"]} == {
        "GetProfile",
        "BatchGetProfiles",
        "ListProfiles",
        "WatchProfiles",
    }
    assert reads["retryPolicy"] == {**backoff, "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}
    assert json.loads(service_config(CONTRACT.service, CONTRACT.idempotent_methods, RetryPolicy(1))) == {
        "methodConfig": []
    }


def test_channel_enables_retries_and_bounds_reconnect_backoff() -> None:
    arguments = dict(
        channel_arguments(ClientOptions(max_reconnect_backoff=0.5), "localhost:1", CONTRACT.service, ())
    )
    assert arguments["grpc.enable_retries"] == 1
    assert arguments["grpc.max_reconnect_backoff_ms"] == 500
    assert arguments["grpc.initial_reconnect_backoff_ms"] == 500


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_attempts=0),
        dict(max_attempts=6),
        dict(initial_backoff=0),
        dict(initial_backoff=3, max_backoff=2),
        dict(backoff_multiplier=0.5),
    ],
)
def test_retry_policy_rejects_what_grpc_would_ignore(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)  # type: ignore[arg-type]
