"""The SDK and the servers agree on the largest response (4 MiB), and a batch of profiles too large for one
response is read in parts: the caller gets every id it asked for, in order, within its one deadline."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from microstate.client import ClientOptions, RetryPolicy, Source
from microstate.client._batches import parts_for
from microstate.client._channel import channel_arguments
from microstate.client._options import MAX_RESPONSE_BYTES
from microstate.client.errors import (
    DeadlineExceeded,
    NoSnapshotError,
    ResponseTooLarge,
    Unavailable,
    from_grpc_error,
)
from microstate.client.profile.v1 import CONTRACT, Profile, ProfileClient, SyncProfileClient
from microstate.server import config
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import FinishedCall, ScriptedProfiles, rich_status, unavailable

Scripted = tuple[ScriptedProfiles, RestartableServer]
WIDE = "\U0001f600"  # four bytes in UTF-8
LARGE = 20
"""Profiles of ~262 KB: 20 make ~5.2 MB, more than one response may hold."""


def large(user_id: str) -> Profile:
    return Profile(user_id=user_id, attributes={f"k{i:02}": WIDE * 1024 for i in range(64)})


def too_large(response_bytes: int | None = 3 * MAX_RESPONSE_BYTES // 2) -> grpc.Status:
    sizes = {} if response_bytes is None else {"response_bytes": str(response_bytes)}
    return rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too large",
        "RESPONSE_TOO_LARGE",
        metadata={**sizes, "max_response_bytes": str(MAX_RESPONSE_BYTES)} if sizes else {},
    )


def test_the_client_receives_exactly_what_the_servers_may_send() -> None:
    arguments = dict(channel_arguments(ClientOptions(), "localhost:1", CONTRACT.service, ()))
    assert arguments["grpc.max_receive_message_length"] == MAX_RESPONSE_BYTES == config.MAX_RESPONSE_BYTES


async def test_a_batch_too_large_for_one_response_is_read_in_parts(real_server: RestartableServer) -> None:
    user_ids = [f"big-{i:02}" for i in range(LARGE)]
    async with ProfileClient(options=fast_options(real_server.target, timeout=30.0)) as client:
        for user_id in user_ids:
            await client.create(large(user_id))
        batch = await client.batch_get([*user_ids, "nobody", user_ids[0]])
        # Snapshots were refreshed by every part: with the server gone, the whole batch is still served.
        await real_server.stop()
        fallback = await client.batch_get(user_ids)

    assert list(batch.found) == user_ids and batch.missing == ["nobody"] and not batch.stale
    assert all(read.source is Source.LIVE for read in batch.found.values())
    assert batch.found["big-07"].value.attributes == large("big-07").attributes
    assert list(fallback.found) == user_ids and fallback.stale


async def test_the_sync_twin_reads_large_batches_in_parts_too(real_server: RestartableServer) -> None:
    user_ids = [f"big-{i:02}" for i in range(LARGE)]
    async with ProfileClient(options=fast_options(real_server.target, timeout=30.0)) as writer:
        for user_id in user_ids:
            await writer.create(large(user_id))
    client = SyncProfileClient(options=fast_options(real_server.target, timeout=30.0))
    try:
        batch = await asyncio.to_thread(client.batch_get, user_ids)
    finally:
        client.close()
    assert list(batch.found) == user_ids and batch.missing == []


async def test_a_part_that_fails_falls_back_like_a_batch_does(scripted: Scripted) -> None:
    servicer, server = scripted
    for user_id in ("u1", "u2", "u3", "u4"):
        servicer.put(user_id)
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(1))) as client:
        await client.get("u1")  # a snapshot of u1, none of u2
        # 1.5 times the limit: two parts of two ids. The first part's call fails, the second is answered.
        servicer.fail("BatchGetProfiles", too_large())
        servicer.fail("BatchGetProfiles", unavailable())
        batch = await client.batch_get(["u1", "u2", "u3", "u4"])

    assert servicer.calls["BatchGetProfiles"] == 3
    assert [(key, read.source) for key, read in batch.found.items()] == [
        ("u1", Source.SNAPSHOT),
        ("u3", Source.LIVE),
        ("u4", Source.LIVE),
    ]
    assert batch.unavailable == ["u2"] and batch.stale and isinstance(batch.fallback_reason, Unavailable)


async def test_parts_that_answer_nothing_raise_no_snapshot_error(scripted: Scripted) -> None:
    servicer, server = scripted
    async with ProfileClient(options=fast_options(server.target, retry=RetryPolicy(1))) as client:
        servicer.fail("BatchGetProfiles", too_large())
        servicer.fail("BatchGetProfiles", unavailable(), times=2)
        with pytest.raises(NoSnapshotError) as caught:
            await client.batch_get(["u1", "u2", "u3"])
    assert caught.value.keys == ("u1", "u2", "u3") and isinstance(caught.value.__cause__, Unavailable)


async def test_one_id_too_large_alone_is_raised_typed(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.always["BatchGetProfiles"] = too_large(5 * MAX_RESPONSE_BYTES)
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(ResponseTooLarge) as caught:
            await client.batch_get(["u1", "u1"])
    assert servicer.calls["BatchGetProfiles"] == 1
    assert (caught.value.response_bytes, caught.value.max_response_bytes) == (
        5 * MAX_RESPONSE_BYTES,
        MAX_RESPONSE_BYTES,
    )
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)


async def test_parts_share_the_deadline_of_the_call(scripted: Scripted) -> None:
    servicer, server = scripted
    user_ids = ["u1", "u2", "u3", "u4"]
    for user_id in user_ids:
        servicer.put(user_id)
    async with ProfileClient(options=fast_options(server.target, timeout=1.5)) as client:
        await client.batch_get(user_ids)  # snapshots of all four
        servicer.delay["BatchGetProfiles"] = 1.0  # a slow server, not synchronisation
        servicer.fail("BatchGetProfiles", too_large())
        started = time.monotonic()
        batch = await client.batch_get(user_ids)
        elapsed = time.monotonic() - started

    # The refusal took 1 s of the 1.5 s: the parts had the rest, not 1.5 s each (which they would use up).
    assert elapsed < 2.5
    assert all(read.source is Source.SNAPSHOT for read in batch.found.values())
    assert isinstance(batch.fallback_reason, DeadlineExceeded)


@pytest.mark.parametrize(
    ("response_bytes", "keys", "parts"),
    [
        (3 * MAX_RESPONSE_BYTES // 2, 4, 2),  # 1.5 times the limit: parts of 0.75
        (10 * MAX_RESPONSE_BYTES, 100, 13),  # each part aims at 80% of the limit
        (None, 5, 2),  # no sizes: halves
        (100 * MAX_RESPONSE_BYTES, 3, 3),  # never fewer than one key per part
    ],
)
def test_parts_are_sized_from_the_refusal(response_bytes: int | None, keys: int, parts: int) -> None:
    error = from_grpc_error(_finished(too_large(response_bytes)))
    assert isinstance(error, ResponseTooLarge)
    names = [f"k{i}" for i in range(keys)]
    split = parts_for(error, names)
    assert split is not None and len(split) == parts
    assert [key for part in split for key in part] == names


def test_nothing_else_is_split() -> None:
    assert parts_for(from_grpc_error(_finished(too_large())), ["only"]) is None
    assert parts_for(from_grpc_error(_finished(unavailable())), ["a", "b"]) is None


def _finished(status: grpc.Status) -> FinishedCall:
    return FinishedCall(status.code, status.details, status.trailing_metadata)
