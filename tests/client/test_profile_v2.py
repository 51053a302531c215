"""The v2 client against the real server that serves v1 and v2 from one store: its own operations end to
end, writes and etags crossing versions both ways, and snapshots kept per version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from microstate.client import CONTRACT_METADATA_KEY, SnapshotOptions, Source
from microstate.client.errors import Aborted, InvalidArgument, NoSnapshotError, NotFound, Unavailable
from microstate.client.profile import v1, v2
from microstate.profile.v2 import profile_pb2 as v2_pb
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer


def full_profile(user_id: str) -> v2.Profile:
    return v2.Profile(
        user_id=user_id,
        name=v2.PersonName(display_name="Ada L.", given_name="Ada", family_name="Lovelace"),
        locale="en-GB",
        preferences=v2.Preferences(theme=v2.Theme.THEME_DARK, content_languages=["en", "fr-CA"]),
        consents=[v2.Consent(purpose="personalisation", granted=True)],
        embedding=v2.Embedding(values=[0.5, -1.0], model="minilm", model_version="6"),
    )


@pytest.fixture
async def clients(real_server: RestartableServer) -> AsyncIterator[tuple[v1.ProfileClient, v2.ProfileClient]]:
    options = fast_options(real_server.target)
    async with v1.ProfileClient(options=options) as old, v2.ProfileClient(options=options) as new:
        yield old, new


Clients = tuple[v1.ProfileClient, v2.ProfileClient]


async def test_v2_create_get_update_list_delete(clients: Clients) -> None:
    _, client = clients
    created = await client.create(full_profile("ada"))
    assert created.etag and created.HasField("create_time") and created.consents[0].decide_time.seconds

    read = await client.get("ada")
    assert read.source is Source.LIVE and read.value == created and read.etag == created.etag

    updated = await client.update(
        v2.Profile(user_id="ada", name=v2.PersonName(given_name="Augusta")),
        ["name.given_name"],
        etag=read.etag,
    )
    assert (updated.name.given_name, updated.name.display_name) == ("Augusta", "Ada L.")
    assert updated.embedding.model == "minilm" and updated.etag != created.etag
    with pytest.raises(Aborted) as stale:
        await client.update(updated, ["locale"], etag=created.etag)
    assert stale.value.reason == "ETAG_MISMATCH"
    with pytest.raises(InvalidArgument) as mask:
        await client.update(updated, ["display_name"])  # a v1 path: not a field of v2's Profile
    assert mask.value.field_violations[0].field == "update_mask"

    await client.create(v2.Profile(user_id="adb"))
    await client.create(v2.Profile(user_id="zed"))
    page = await client.list("ad", page_size=1)
    assert [p.user_id for p in page.items] == ["ada"] and page.next_page_token
    assert [p.user_id async for p in client.list_all("ad", page_size=1)] == ["ada", "adb"]
    batch = await client.batch_get(["ada", "nobody"])
    assert batch.found["ada"].value == updated and batch.missing == ["nobody"]

    await client.delete("ada", etag=updated.etag)
    with pytest.raises(NotFound):
        await client.get("ada")


async def test_a_v2_write_reads_through_v1_and_etags_guard_either_way(clients: Clients) -> None:
    old, new = clients
    created = await new.create(full_profile("u1"))

    seen_by_v1 = (await old.get("u1")).value
    assert (seen_by_v1.display_name, seen_by_v1.locale, list(seen_by_v1.embedding)) == (
        "Ada L.",
        "en-GB",
        [0.5, -1.0],
    )
    assert (
        seen_by_v1.attributes["pref.theme"] == "dark"
        and seen_by_v1.attributes["pref.languages"] == "en,fr-CA"
    )
    assert seen_by_v1.etag == created.etag

    # v2's etag guards a v1 write, whose etag guards the next v2 write; the stale one no longer does.
    renamed = await old.update(
        v1.Profile(user_id="u1", display_name="Countess"), ["display_name"], etag=created.etag
    )
    with pytest.raises(Aborted):
        await new.update(v2.Profile(user_id="u1", locale="fr-FR"), ["locale"], etag=created.etag)
    moved = await new.update(v2.Profile(user_id="u1", locale="fr-FR"), ["locale"], etag=renamed.etag)
    # The v1 write kept what v1 cannot show.
    assert moved.name == v2.PersonName(display_name="Countess", given_name="Ada", family_name="Lovelace")
    assert [c.purpose for c in moved.consents] == ["personalisation"]
    with pytest.raises(Aborted):
        await old.delete("u1", etag=renamed.etag)
    await old.delete("u1", etag=moved.etag)
    with pytest.raises(NotFound):
        await new.get("u1")


async def test_a_v1_write_reads_through_v2(clients: Clients) -> None:
    old, new = clients
    created = await old.create(
        v1.Profile(user_id="g", display_name="Grace", attributes={"pref.theme": "light", "tier": "gold"})
    )
    read = await new.get("g")
    assert read.value.name.display_name == "Grace" and read.value.preferences.theme == v2.Theme.THEME_LIGHT
    assert read.etag == created.etag
    updated = await new.update(
        v2.Profile(user_id="g", preferences=v2.Preferences(marketing_emails=True)),
        ["preferences.marketing_emails"],
        etag=read.etag,
    )
    assert dict((await old.get("g")).value.attributes) == {
        "pref.theme": "light",
        "pref.marketing_emails": "true",
        "tier": "gold",  # kept by a v2 write, which cannot show it
    }
    await new.delete("g", etag=updated.etag)


async def test_v2_watch_sees_both_versions_writes_and_resumes(
    clients: Clients, real_server: RestartableServer
) -> None:
    old, new = clients
    # A resume token from before the writes, taken from a raw stream whose headers prove it is open.
    async with grpc.aio.insecure_channel(real_server.target) as channel:
        raw = v2_grpc.ProfileServiceStub(channel).WatchProfiles(
            v2_pb.WatchProfilesRequest(user_id_prefix="w"),
            metadata=((CONTRACT_METADATA_KEY, v2.CONTRACT.name),),
        )
        await raw.initial_metadata()
        first = await new.create(v2.Profile(user_id="w1", name=v2.PersonName(display_name="A")))
        async with asyncio.timeout(5):
            token = (await raw.read()).resume_token
        raw.cancel()

    updated = await old.update(v1.Profile(user_id="w1", display_name="B"), ["display_name"], etag=first.etag)
    await new.create(v2.Profile(user_id="other"))  # outside the prefix
    await new.delete("w1")

    events = new.watch("w", resume_token=token)
    async with asyncio.timeout(5):
        seen = [await anext(events), await anext(events)]
    await events.aclose()
    assert [(e.change_type, e.user_id) for e in seen] == [
        (v2.ChangeType.CHANGE_TYPE_UPDATED, "w1"),
        (v2.ChangeType.CHANGE_TYPE_DELETED, "w1"),
    ]
    assert seen[0].profile.name.display_name == "B" and seen[0].profile.etag == updated.etag


async def test_v2_reads_fall_back_to_v2_snapshots_and_versions_keep_their_own(
    real_server: RestartableServer, tmp_path: Path
) -> None:
    path = str(tmp_path / "profile.snap")
    options = fast_options(real_server.target, snapshot=SnapshotOptions(path=path))
    async with v2.ProfileClient(options=options) as client:
        created = await client.create(full_profile("s1"))
        await real_server.stop()
        read = await client.get("s1")
        assert read.stale and read.value == created and isinstance(read.fallback_reason, Unavailable)
        batch = await client.batch_get(["s1", "s2"])
        assert batch.found["s1"].value.name.family_name == "Lovelace" and batch.unavailable == ["s2"]

    def warm_start() -> None:  # the sync twin, from the file the async client wrote on close
        with v2.SyncProfileClient(options=options) as restarted:
            warm = restarted.get("s1")
            assert warm.source is Source.SNAPSHOT and warm.value == created
        with v1.SyncProfileClient(options=options) as other_version, pytest.raises(NoSnapshotError):
            other_version.get("s1")  # v2's file is not v1's snapshot

    await asyncio.to_thread(warm_start)


async def test_one_snapshot_directory_keeps_a_file_per_contract(
    real_server: RestartableServer, tmp_path: Path
) -> None:
    folder = str(tmp_path / "snapshots") + "/"
    options = fast_options(real_server.target, snapshot=SnapshotOptions(path=folder))
    async with v1.ProfileClient(options=options) as old, v2.ProfileClient(options=options) as new:
        await old.create(v1.Profile(user_id="d1", display_name="Ada"))
        assert (await old.get("d1")).source is Source.LIVE
        assert (await new.get("d1")).source is Source.LIVE
    files = await asyncio.to_thread(lambda: sorted(p.name for p in Path(folder).iterdir()))
    assert files == ["microstate.profile.v1.snapshot", "microstate.profile.v2.snapshot"]
    await real_server.stop()

    def warm_start() -> None:
        with v1.SyncProfileClient(options=options) as old, v2.SyncProfileClient(options=options) as new:
            assert old.get("d1").value.display_name == "Ada"
            assert new.get("d1").value.name.display_name == "Ada"

    await asyncio.to_thread(warm_start)
