"""The async client against the real profile server (servicer, domain, SQLite): the happy paths and the
typed errors the real server produces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from microstate.client import Source
from microstate.client.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.profile.v1 import profile_pb2_grpc
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles


@pytest.fixture
async def client(real_server: RestartableServer) -> AsyncIterator[ProfileClient]:
    async with ProfileClient(options=fast_options(real_server.target)) as client:
        yield client


async def test_create_get_update_delete(client: ProfileClient) -> None:
    created = await client.create(
        Profile(user_id="ada", display_name="Ada", locale="en-GB", embedding=[0.5, 1.0])
    )
    assert created.etag and created.HasField("create_time")

    read = await client.get("ada")
    assert read.source is Source.LIVE and not read.stale and read.fallback_reason is None
    assert read.value == created and read.etag == created.etag
    assert read.age < 1.0

    updated = await client.update(
        Profile(user_id="ada", display_name="Ada L."), ["display_name"], etag=created.etag
    )
    assert updated.display_name == "Ada L." and updated.locale == "en-GB" and updated.etag != created.etag

    await client.delete("ada", etag=updated.etag)
    with pytest.raises(NotFound) as caught:
        await client.get("ada")
    assert caught.value.reason == "PROFILE_NOT_FOUND" and caught.value.domain == "microstate.dev"


async def test_stale_etag_is_aborted_with_precondition_details(client: ProfileClient) -> None:
    created = await client.create(Profile(user_id="bob"))
    await client.update(Profile(user_id="bob", display_name="B"), ["display_name"])

    with pytest.raises(Aborted) as caught:
        await client.update(Profile(user_id="bob", display_name="C"), ["display_name"], etag=created.etag)
    assert caught.value.reason == "ETAG_MISMATCH"
    assert [v.type for v in caught.value.precondition_violations] == ["ETAG"]
    assert caught.value.metadata["current_etag"] != created.etag
    with pytest.raises(Aborted):
        await client.delete("bob", etag=created.etag)


async def test_update_uses_the_profiles_own_etag_and_leaves_the_argument_alone(client: ProfileClient) -> None:
    created = await client.create(Profile(user_id="cy"))
    stale = Profile()
    stale.CopyFrom(created)
    await client.update(created, ["display_name"])  # guarded by created.etag, which is current
    with pytest.raises(Aborted):
        await client.update(stale, ["display_name"])
    assert stale.etag == created.etag


async def test_typed_errors_carry_the_real_servers_details(client: ProfileClient) -> None:
    await client.create(Profile(user_id="dup"))
    with pytest.raises(AlreadyExists) as exists:
        await client.create(Profile(user_id="dup"))
    assert exists.value.reason == "PROFILE_ALREADY_EXISTS"

    with pytest.raises(InvalidArgument) as invalid:
        await client.get("not a valid id!")
    assert invalid.value.field_violations and invalid.value.field_violations[0].field == "user_id"

    with pytest.raises(InvalidArgument) as mask:
        await client.update(Profile(user_id="dup"), ["no_such_field"])
    assert mask.value.field_violations[0].field == "update_mask"


async def test_batch_get_reports_found_and_missing(client: ProfileClient) -> None:
    for user_id in ("b1", "b2"):
        await client.create(Profile(user_id=user_id))
    batch = await client.batch_get(["b2", "nope", "b1", "b2"])
    assert list(batch.found) == ["b2", "b1"]
    assert all(read.source is Source.LIVE for read in batch.found.values())
    assert batch.missing == ["nope"] and batch.unavailable == [] and not batch.stale


async def test_empty_batch_makes_no_call(client: ProfileClient) -> None:
    batch = await client.batch_get([])
    assert batch.found == {} and batch.missing == []


async def test_list_pages_and_list_all(client: ProfileClient) -> None:
    for user_id in ("p3", "p1", "p2", "q1", "p4", "p5"):
        await client.create(Profile(user_id=user_id))
    first = await client.list("p", page_size=2)
    assert [p.user_id for p in first.items] == ["p1", "p2"] and first.next_page_token
    everything = [profile.user_id async for profile in client.list_all("p", page_size=2)]
    assert everything == ["p1", "p2", "p3", "p4", "p5"]


def test_a_client_built_outside_any_event_loop_works_inside_one() -> None:
    # Typical of a worker that builds its client at import time and later runs asyncio.run(main()).
    servicer = ScriptedProfiles()
    servicer.put("u")
    server = RestartableServer(lambda s: profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, s))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(server.start())
        client = ProfileClient(options=fast_options(server.target))  # no loop is running here
        read = loop.run_until_complete(client.get("u"))
        assert read.source is Source.LIVE
        loop.run_until_complete(client.close())
        loop.run_until_complete(server.stop())
    finally:
        loop.close()
