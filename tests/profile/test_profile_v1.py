"""Profile v1 end to end in one process: real servicer, domain and SQLite store, raw stubs."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from tests.support.rpc_errors import details, fails, violated_fields

Stub = profile_pb2_grpc.ProfileServiceStub


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


def profile(user_id: str = "u1", **fields: object) -> pb.Profile:
    defaults: dict[str, object] = {
        "display_name": "Ada",
        "locale": "en-GB",
        "attributes": {"tier": "gold"},
        "embedding": [0.5, -1.25, 3.0],
    }
    return pb.Profile(user_id=user_id, **{**defaults, **fields})


async def test_create_then_get_round_trips_every_field(stub: Stub) -> None:
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    got = await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))
    assert got == created
    assert (got.display_name, got.locale, dict(got.attributes)) == ("Ada", "en-GB", {"tier": "gold"})
    assert list(got.embedding) == [0.5, -1.25, 3.0]
    assert got.etag and got.create_time.ToNanoseconds() > 0
    assert got.update_time == got.create_time


async def test_create_on_a_taken_id_is_already_exists_and_keeps_the_original(stub: Stub) -> None:
    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    await fails(
        stub.CreateProfile(pb.CreateProfileRequest(profile=profile(display_name="Imposter"))),
        grpc.StatusCode.ALREADY_EXISTS,
        "PROFILE_ALREADY_EXISTS",
    )
    assert (await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))).display_name == "Ada"


async def test_get_missing_is_not_found_with_error_info(stub: Stub) -> None:
    unpacked = await fails(
        stub.GetProfile(pb.GetProfileRequest(user_id="ghost")), grpc.StatusCode.NOT_FOUND, "PROFILE_NOT_FOUND"
    )
    info = unpacked["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["user_id"] == "ghost"


@pytest.mark.parametrize("user_id", ["", "x" * 129, "-starts-with-dash", "has space", "slash/inside", "é"])
async def test_malformed_user_id_is_a_field_violation_and_stores_nothing(stub: Stub, user_id: str) -> None:
    unpacked = await fails(
        stub.CreateProfile(pb.CreateProfileRequest(profile=profile(user_id))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_USER_ID",
    )
    assert violated_fields(unpacked) == ["profile.user_id"]
    listed = await stub.ListProfiles(pb.ListProfilesRequest())
    assert list(listed.profiles) == []


async def test_longest_valid_user_id_is_accepted(stub: Stub) -> None:
    user_id = "a" + "b.c_d:e@f-" * 12 + "x" * 7
    assert len(user_id) == 128
    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile(user_id)))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"embedding": [0.0] * 4097}, "profile.embedding"),
        ({"embedding": [math.nan]}, "profile.embedding"),
        ({"attributes": {f"k{i}": "v" for i in range(65)}}, "profile.attributes"),
        ({"attributes": {"k": "v" * 1025}}, "profile.attributes['k']"),
        ({"display_name": "d" * 257}, "profile.display_name"),
        ({"locale": "not a locale"}, "profile.locale"),
    ],
)
async def test_limits_are_invalid_argument_and_a_rejected_update_changes_nothing(
    stub: Stub, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateProfile(pb.CreateProfileRequest(profile=profile("new", **fields)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(details(caught.value)) == [field]

    before = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateProfile(pb.UpdateProfileRequest(profile=profile(**fields)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await stub.GetProfile(pb.GetProfileRequest(user_id="u1")) == before


async def test_update_changes_only_masked_fields_and_moves_the_etag(stub: Stub) -> None:
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    updated = await stub.UpdateProfile(
        pb.UpdateProfileRequest(
            profile=pb.Profile(
                user_id="u1", display_name="Grace", locale="ignored-because-unmasked", etag=created.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert (updated.display_name, updated.locale) == ("Grace", "en-GB")
    assert list(updated.embedding) == [0.5, -1.25, 3.0]
    assert updated.etag != created.etag
    assert updated.create_time == created.create_time
    assert updated.update_time.ToNanoseconds() > created.update_time.ToNanoseconds()


async def test_attribute_key_paths_set_and_remove_single_keys(stub: Stub) -> None:
    await stub.CreateProfile(
        pb.CreateProfileRequest(profile=profile(attributes={"tier": "gold", "region": "eu"}))
    )
    updated = await stub.UpdateProfile(
        pb.UpdateProfileRequest(
            profile=pb.Profile(user_id="u1", attributes={"team": "ml"}),
            update_mask=field_mask_pb2.FieldMask(paths=["attributes.team", "attributes.region"]),
        )
    )
    assert dict(updated.attributes) == {"tier": "gold", "team": "ml"}


async def test_empty_mask_replaces_every_writable_field(stub: Stub) -> None:
    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    updated = await stub.UpdateProfile(
        pb.UpdateProfileRequest(profile=pb.Profile(user_id="u1", display_name="Z"))
    )
    assert (updated.display_name, updated.locale, dict(updated.attributes), list(updated.embedding)) == (
        "Z",
        "",
        {},
        [],
    )


@pytest.mark.parametrize("path", ["nickname", "etag", "user_id", "create_time", "attributes."])
async def test_unknown_or_read_only_mask_path_is_invalid_argument(stub: Stub, path: str) -> None:
    before = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    unpacked = await fails(
        stub.UpdateProfile(
            pb.UpdateProfileRequest(
                profile=pb.Profile(user_id="u1", display_name="X"),
                update_mask=field_mask_pb2.FieldMask(paths=[path]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_UPDATE_MASK",
    )
    assert violated_fields(unpacked) == ["update_mask"]
    assert await stub.GetProfile(pb.GetProfileRequest(user_id="u1")) == before


async def test_stale_etag_is_aborted_with_precondition_failure(stub: Stub) -> None:
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    mask = field_mask_pb2.FieldMask(paths=["display_name"])
    fresh = await stub.UpdateProfile(
        pb.UpdateProfileRequest(
            profile=pb.Profile(user_id="u1", display_name="B", etag=created.etag), update_mask=mask
        )
    )
    unpacked = await fails(
        stub.UpdateProfile(
            pb.UpdateProfileRequest(
                profile=pb.Profile(user_id="u1", display_name="C", etag=created.etag), update_mask=mask
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    failure = unpacked["PreconditionFailure"]
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert failure.violations[0].subject == "profiles/u1"
    assert await stub.GetProfile(pb.GetProfileRequest(user_id="u1")) == fresh


async def test_concurrent_partial_updates_lose_nothing(stub: Stub) -> None:
    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile(attributes={})))

    async def set_key(i: int) -> None:
        await stub.UpdateProfile(
            pb.UpdateProfileRequest(
                profile=pb.Profile(user_id="u1", attributes={f"k{i}": str(i)}),
                update_mask=field_mask_pb2.FieldMask(paths=[f"attributes.k{i}"]),
            )
        )

    await asyncio.gather(*(set_key(i) for i in range(20)))
    got = await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))
    assert dict(got.attributes) == {f"k{i}": str(i) for i in range(20)}


async def test_delete_honours_the_etag(stub: Stub) -> None:
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile()))
    await fails(
        stub.DeleteProfile(pb.DeleteProfileRequest(user_id="u1", etag='W/"999999"')),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await stub.DeleteProfile(pb.DeleteProfileRequest(user_id="u1", etag=created.etag))
    await fails(
        stub.GetProfile(pb.GetProfileRequest(user_id="u1")), grpc.StatusCode.NOT_FOUND, "PROFILE_NOT_FOUND"
    )
    await fails(
        stub.DeleteProfile(pb.DeleteProfileRequest(user_id="u1")),
        grpc.StatusCode.NOT_FOUND,
        "PROFILE_NOT_FOUND",
    )


async def test_batch_get_reports_missing_ids_in_request_order(stub: Stub) -> None:
    for user_id in ("a", "b", "c"):
        await stub.CreateProfile(pb.CreateProfileRequest(profile=profile(user_id)))
    response = await stub.BatchGetProfiles(pb.BatchGetProfilesRequest(user_ids=["c", "x", "a", "c", "y"]))
    assert [p.user_id for p in response.profiles] == ["c", "a"]
    assert list(response.missing_user_ids) == ["x", "y"]


async def test_batch_get_limits(stub: Stub) -> None:
    ok = await stub.BatchGetProfiles(pb.BatchGetProfilesRequest(user_ids=[f"u{i}" for i in range(1000)]))
    assert len(ok.missing_user_ids) == 1000
    await fails(
        stub.BatchGetProfiles(pb.BatchGetProfilesRequest(user_ids=[f"u{i}" for i in range(1001)])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
    )
    unpacked = await fails(
        stub.BatchGetProfiles(pb.BatchGetProfilesRequest(user_ids=["ok", "not ok"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_USER_ID",
    )
    assert violated_fields(unpacked) == ["user_ids[1]"]


@pytest.mark.parametrize("bad", ["a\nb", "ok\n", "\n", ""])
async def test_batch_get_refuses_an_id_that_holds_a_line_break(stub: Stub, bad: str) -> None:
    """The batch check matches all ids joined by line breaks at once: an id with one inside must not pass
    as two good ids."""
    unpacked = await fails(
        stub.BatchGetProfiles(pb.BatchGetProfilesRequest(user_ids=["ok", bad, "fine"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_USER_ID",
    )
    assert violated_fields(unpacked) == ["user_ids[1]"]


async def test_list_pages_through_a_prefix_with_opaque_tokens(stub: Stub) -> None:
    ids = [f"team-{i:02d}" for i in range(25)] + ["other"]
    for user_id in ids:
        await stub.CreateProfile(pb.CreateProfileRequest(profile=profile(user_id)))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListProfiles(
            pb.ListProfilesRequest(page_size=10, page_token=token, user_id_prefix="team-")
        )
        assert len(page.profiles) <= 10
        seen += [p.user_id for p in page.profiles]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(ids[:25])


async def test_list_rejects_foreign_tokens_and_negative_sizes(stub: Stub) -> None:
    for user_id in ("a1", "a2", "b1"):
        await stub.CreateProfile(pb.CreateProfileRequest(profile=profile(user_id)))
    page = await stub.ListProfiles(pb.ListProfilesRequest(page_size=1, user_id_prefix="a"))
    await fails(
        stub.ListProfiles(pb.ListProfilesRequest(page_token=page.next_page_token, user_id_prefix="b")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await fails(
        stub.ListProfiles(pb.ListProfilesRequest(page_token="garbage!")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await fails(
        stub.ListProfiles(pb.ListProfilesRequest(page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


async def next_events(stream: grpc.aio.UnaryStreamCall, count: int) -> list[pb.WatchProfilesResponse]:
    async with asyncio.timeout(10):
        return [await stream.read() for _ in range(count)]


async def test_watch_streams_changes_and_resumes_without_gaps_or_duplicates(stub: Stub) -> None:
    stream = stub.WatchProfiles(pb.WatchProfilesRequest(user_id_prefix="w"))
    await stream.initial_metadata()  # the contract: once headers arrive, every later write is streamed
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile("w1")))
    first = await next_events(stream, 1)
    assert first[0].change_type == pb.CHANGE_TYPE_CREATED and first[0].profile == created

    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile("other")))  # filtered out by the prefix
    await stub.UpdateProfile(pb.UpdateProfileRequest(profile=profile("w1", display_name="B")))
    await stub.DeleteProfile(pb.DeleteProfileRequest(user_id="w1"))
    await stub.CreateProfile(pb.CreateProfileRequest(profile=profile("w2")))
    rest = await next_events(stream, 3)
    stream.cancel()
    assert [(e.change_type, e.user_id) for e in rest] == [
        (pb.CHANGE_TYPE_UPDATED, "w1"),
        (pb.CHANGE_TYPE_DELETED, "w1"),
        (pb.CHANGE_TYPE_CREATED, "w2"),
    ]
    assert not rest[1].HasField("profile")

    resumed = stub.WatchProfiles(
        pb.WatchProfilesRequest(user_id_prefix="w", resume_token=first[0].resume_token)
    )
    again = await next_events(resumed, 3)
    resumed.cancel()
    assert [e.resume_token for e in again] == [e.resume_token for e in rest]


async def test_watch_rejects_a_junk_resume_token(stub: Stub) -> None:
    stream = stub.WatchProfiles(pb.WatchProfilesRequest(resume_token="not-a-token"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(10):
            await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
