"""Watch reconnects by itself on UNAVAILABLE or a drained stream and resumes from the last resume token."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
import pytest

from microstate.client.errors import DeadlineExceeded, FailedPrecondition, NoSnapshotError
from microstate.client.profile.v1 import ChangeType, Profile, ProfileChange, ProfileClient, Source
from microstate.profile.v1 import profile_pb2 as pb
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles, rich_status, unavailable
from tests.support.watches import first_token

Scripted = tuple[ScriptedProfiles, RestartableServer]


async def _take(events: AsyncIterator[ProfileChange], count: int, within: float = 5.0) -> list[ProfileChange]:
    async def take() -> list[ProfileChange]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(take(), within)


@pytest.mark.parametrize("ending", ["unavailable", "drained"])
async def test_broken_streams_resume_after_the_last_event(scripted: Scripted, ending: str) -> None:
    servicer, server = scripted
    if ending == "drained":
        servicer.break_watch_with = None
    for user_id in ("a", "b", "c", "d", "e"):
        await servicer.append_event(user_id)
    servicer.break_watch_after.extend([2, 2])
    async with ProfileClient(options=fast_options(server.target)) as client:
        events = client.watch(resume_token="0")
        seen = await _take(events, 5)
        await events.aclose()
    assert [e.user_id for e in seen] == ["a", "b", "c", "d", "e"]
    assert servicer.watch_tokens == ["0", "2", "4"]


async def test_watch_refreshes_snapshots(scripted: Scripted) -> None:
    servicer, server = scripted
    async with ProfileClient(options=fast_options(server.target)) as client:
        events = client.watch(resume_token="0")
        await servicer.append_event("seen")
        await _take(events, 1)
        await events.aclose()
        servicer.always["GetProfile"] = unavailable()
        assert (await client.get("seen")).source is Source.SNAPSHOT
        with pytest.raises(NoSnapshotError):
            await client.get("unseen")


async def test_a_watch_deadline_ends_reconnecting(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.always["WatchProfiles"] = unavailable()
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(DeadlineExceeded):
            await asyncio.wait_for(anext(client.watch(timeout=0.3)), 5)
    assert servicer.calls["WatchProfiles"] > 3  # gRPC's own retries, then the watch's reconnects


async def test_an_expired_token_is_raised_not_retried(scripted: Scripted) -> None:
    servicer, server = scripted
    servicer.fail(
        "WatchProfiles", rich_status(grpc.StatusCode.FAILED_PRECONDITION, "too old", "RESUME_TOKEN_EXPIRED")
    )
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(FailedPrecondition) as caught:
            await anext(client.watch(resume_token="1"))
    assert caught.value.reason == "RESUME_TOKEN_EXPIRED" and servicer.calls["WatchProfiles"] == 1


@contextlib.asynccontextmanager
async def _watching(
    server: RestartableServer, prefix: str
) -> AsyncIterator[tuple[AsyncGenerator[ProfileChange, None], ProfileClient]]:
    """A watch of `prefix` on the real server that sees every write made from now on, and a client to
    make them with."""
    async with (
        ProfileClient(options=fast_options(server.target)) as watcher,
        ProfileClient(options=fast_options(server.target)) as writer,
    ):
        events = watcher.watch(prefix=prefix, resume_token=await first_token(watcher, writer))
        try:
            yield events, writer
        finally:
            await events.aclose()


async def test_watch_resumes_across_a_server_restart_without_gaps_or_duplicates(
    real_server: RestartableServer,
) -> None:
    async with _watching(real_server, "w-") as (events, writer):
        await writer.create(Profile(user_id="w-1"))
        await writer.create(Profile(user_id="w-2"))
        before = await _take(events, 2)

        # The watcher is not iterating across the restart, so it can only see these writes, made before
        # it reconnects, by resuming from its last token: a stream "from now" would miss them.
        await real_server.stop()
        await real_server.start()
        await writer.create(Profile(user_id="w-3"))
        await writer.update(Profile(user_id="w-1", display_name="again"), ["display_name"])
        after = await _take(events, 2, within=10.0)

    assert [(e.user_id, e.change_type) for e in before + after] == [
        ("w-1", 1),
        ("w-2", 1),
        ("w-3", 1),
        ("w-1", 2),
    ]
    assert len({e.resume_token for e in before + after}) == 4


async def test_changes_name_their_type_and_carry_the_profile_after_them(
    real_server: RestartableServer,
) -> None:
    async with _watching(real_server, "n-") as (events, writer):
        created = await writer.create(Profile(user_id="n-1", display_name="A"))
        updated = await writer.update(Profile(user_id="n-1", display_name="B"), ["display_name"])
        await writer.delete("n-1")
        changes = await _take(events, 3)

    assert [f"{change.change_type} {change.user_id}" for change in changes] == [
        "CREATED n-1",
        "UPDATED n-1",
        "DELETED n-1",
    ]
    assert [change.change_type for change in changes] == [ChangeType.CREATED, 2, pb.CHANGE_TYPE_DELETED]
    assert ChangeType.CHANGE_TYPE_UPDATED is ChangeType.UPDATED  # the generated enum's names still work
    assert [change.profile for change in changes] == [created, updated, None]
    assert all(change.commit_time.tzinfo is datetime.UTC for change in changes)
    assert changes[0].commit_time <= changes[2].commit_time
