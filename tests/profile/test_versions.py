"""v1 and v2 served side by side from one stored representation: each reads what the other writes."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.profile.v2 import profile_pb2 as v2
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from microstate.server import wellknown
from microstate.server.profile.model import ProfileData
from microstate.server.store.base import ABSENT, Store
from tests.support.rpc_errors import fails, violated_fields


@pytest.fixture
def stubs(channel: grpc.aio.Channel) -> tuple[v1_grpc.ProfileServiceStub, v2_grpc.ProfileServiceStub]:
    return v1_grpc.ProfileServiceStub(channel), v2_grpc.ProfileServiceStub(channel)


Stubs = tuple[v1_grpc.ProfileServiceStub, v2_grpc.ProfileServiceStub]


async def written_by(store: Store, user_id: str) -> str:
    record = await store.get(user_id)
    assert record is not None
    return ProfileData.from_bytes(record.value).written_by


def full_v2(user_id: str = "u1") -> v2.Profile:
    return v2.Profile(
        user_id=user_id,
        name=v2.PersonName(display_name="Ada L.", given_name="Ada", family_name="Lovelace"),
        locale="en-GB",
        preferences=v2.Preferences(
            theme=v2.THEME_DARK, content_languages=["en", "fr-CA"], marketing_emails=True
        ),
        consents=[v2.Consent(purpose="personalisation", granted=True)],
        embedding=v2.Embedding(values=[0.25, -2.0], model="minilm", model_version="6"),
    )


async def test_a_v2_write_reads_back_through_v1_where_they_overlap(stubs: Stubs, store: Store) -> None:
    stub1, stub2 = stubs
    created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=full_v2()))
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id="u1"))
    assert (old.display_name, old.locale, list(old.embedding)) == ("Ada L.", "en-GB", [0.25, -2.0])
    assert dict(old.attributes) == {
        "pref.theme": "dark",
        "pref.languages": "en,fr-CA",
        "pref.marketing_emails": "true",
    }
    assert old.etag == created.etag
    assert old.create_time == created.create_time
    assert created.consents[0].decide_time.ToNanoseconds() > 0
    assert await written_by(store, "u1") == "microstate.profile.v2"


async def test_a_v1_write_reads_back_through_v2_and_v2_keeps_what_it_cannot_show(
    stubs: Stubs, store: Store
) -> None:
    stub1, stub2 = stubs
    await stub1.CreateProfile(
        v1.CreateProfileRequest(
            profile=v1.Profile(
                user_id="u1",
                display_name="Grace",
                attributes={"pref.theme": "light", "tier": "gold"},
                embedding=[1.0],
            )
        )
    )
    new = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    assert new.name.display_name == "Grace"
    assert new.preferences.theme == v2.THEME_LIGHT
    assert list(new.embedding.values) == [1.0]
    assert await written_by(store, "u1") == "microstate.profile.v1"

    await stub2.UpdateProfile(
        v2.UpdateProfileRequest(
            profile=v2.Profile(user_id="u1", name=v2.PersonName(given_name="Grace", family_name="Hopper")),
            update_mask=field_mask_pb2.FieldMask(paths=["name.given_name", "name.family_name"]),
        )
    )
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id="u1"))
    assert old.display_name == "Grace"
    assert dict(old.attributes) == {
        "pref.theme": "light",
        "tier": "gold",
    }  # v2 cannot see "tier"; it survives
    assert await written_by(store, "u1") == "microstate.profile.v2"

    await stub1.UpdateProfile(
        v1.UpdateProfileRequest(
            profile=v1.Profile(user_id="u1", display_name="G. Hopper"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    new = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    assert (new.name.display_name, new.name.given_name, new.name.family_name) == (
        "G. Hopper",
        "Grace",
        "Hopper",
    )


async def test_an_etag_from_one_version_guards_a_write_through_the_other(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    created = await stub1.CreateProfile(v1.CreateProfileRequest(profile=v1.Profile(user_id="u1")))
    mask = field_mask_pb2.FieldMask(paths=["locale"])
    updated = await stub2.UpdateProfile(
        v2.UpdateProfileRequest(
            profile=v2.Profile(user_id="u1", locale="de", etag=created.etag), update_mask=mask
        )
    )
    await fails(
        stub2.UpdateProfile(
            v2.UpdateProfileRequest(
                profile=v2.Profile(user_id="u1", locale="fr", etag=created.etag), update_mask=mask
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await fails(
        stub1.DeleteProfile(v1.DeleteProfileRequest(user_id="u1", etag=created.etag)),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await stub1.DeleteProfile(v1.DeleteProfileRequest(user_id="u1", etag=updated.etag))


async def test_a_v1_embedding_write_clears_the_model_tag(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    await stub2.CreateProfile(v2.CreateProfileRequest(profile=full_v2()))
    await stub1.UpdateProfile(
        v1.UpdateProfileRequest(
            profile=v1.Profile(user_id="u1", embedding=[9.0]),
            update_mask=field_mask_pb2.FieldMask(paths=["embedding"]),
        )
    )
    new = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    assert (list(new.embedding.values), new.embedding.model, new.embedding.model_version) == ([9.0], "", "")


async def test_each_version_reports_violations_in_its_own_field_names(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    unpacked = await fails(
        stub1.CreateProfile(
            v1.CreateProfileRequest(profile=v1.Profile(user_id="u1", attributes={"pref.theme": "banana"}))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert violated_fields(unpacked) == ["profile.attributes['pref.theme']"]
    bad_theme = full_v2()
    bad_theme.preferences.theme = 42  # type: ignore[assignment]
    unpacked = await fails(
        stub2.CreateProfile(v2.CreateProfileRequest(profile=bad_theme)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert violated_fields(unpacked) == ["profile.preferences.theme"]
    long_name = full_v2()
    long_name.name.family_name = "x" * 257
    unpacked = await fails(
        stub2.CreateProfile(v2.CreateProfileRequest(profile=long_name)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
    )
    assert violated_fields(unpacked) == ["profile.name.family_name"]
    duplicate = full_v2()
    duplicate.consents.add(purpose="personalisation", granted=False)
    unpacked = await fails(
        stub2.CreateProfile(v2.CreateProfileRequest(profile=duplicate)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert violated_fields(unpacked) == ["profile.consents"]


async def test_v2_masks_name_groups_and_rejects_v1_paths(stubs: Stubs) -> None:
    _, stub2 = stubs
    await stub2.CreateProfile(v2.CreateProfileRequest(profile=full_v2()))
    updated = await stub2.UpdateProfile(
        v2.UpdateProfileRequest(
            profile=v2.Profile(user_id="u1", preferences=v2.Preferences(theme=v2.THEME_SYSTEM)),
            update_mask=field_mask_pb2.FieldMask(paths=["preferences"]),
        )
    )
    assert updated.preferences == v2.Preferences(theme=v2.THEME_SYSTEM)
    assert updated.name.given_name == "Ada"
    await fails(
        stub2.UpdateProfile(
            v2.UpdateProfileRequest(
                profile=v2.Profile(user_id="u1"), update_mask=field_mask_pb2.FieldMask(paths=["display_name"])
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_UPDATE_MASK",
    )


async def test_watch_through_v2_sees_v1_writes(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    stream = stub2.WatchProfiles(v2.WatchProfilesRequest())
    await stream.initial_metadata()
    await stub1.CreateProfile(v1.CreateProfileRequest(profile=v1.Profile(user_id="u1", display_name="A")))
    event = await stream.read()
    stream.cancel()
    assert (event.change_type, event.profile.name.display_name) == (v2.CHANGE_TYPE_CREATED, "A")


def with_consent_at(seconds: int, nanos: int = 0) -> v2.Profile:
    """full_v2 with a second consent decided at the given Timestamp (which may be out of range)."""
    profile = full_v2()
    profile.consents.add(
        purpose="analytics", granted=False, decide_time=Timestamp(seconds=seconds, nanos=nanos)
    )
    return profile


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (wellknown.MAX_TIMESTAMP_SECONDS + 1, 0),  # 10000-01-01
        (wellknown.MIN_TIMESTAMP_SECONDS - 1, 0),  # 0000-12-31
        (0, -1),
        (0, 1_000_000_000),
    ],
)
async def test_an_out_of_range_decide_time_is_invalid_argument_naming_the_consent(
    stubs: Stubs, seconds: int, nanos: int
) -> None:
    _, stub2 = stubs
    bad = with_consent_at(seconds, nanos)
    unpacked = await fails(
        stub2.CreateProfile(v2.CreateProfileRequest(profile=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TIMESTAMP",
    )
    assert violated_fields(unpacked) == ["profile.consents[1].decide_time"]
    await fails(
        stub2.GetProfile(v2.GetProfileRequest(user_id="u1")), grpc.StatusCode.NOT_FOUND, "PROFILE_NOT_FOUND"
    )

    created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=full_v2()))
    unpacked = await fails(
        stub2.UpdateProfile(
            v2.UpdateProfileRequest(profile=bad, update_mask=field_mask_pb2.FieldMask(paths=["consents"]))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TIMESTAMP",
    )
    assert violated_fields(unpacked) == ["profile.consents[1].decide_time"]
    assert await stub2.GetProfile(v2.GetProfileRequest(user_id="u1")) == created


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (wellknown.MIN_TIMESTAMP_SECONDS, 0),  # 0001-01-01T00:00:00Z
        (wellknown.MAX_TIMESTAMP_SECONDS, 999_999_999),  # 9999-12-31T23:59:59.999999999Z
        (-9_300_000_000, 1),  # 1675, just before int64 nanoseconds begin
        (9_300_000_000, 5),  # 2264, just after they end
        (1_764_150_000, 123_456_789),
    ],
)
async def test_every_valid_decide_time_reads_back_exactly_through_both_versions_writes(
    stubs: Stubs, seconds: int, nanos: int
) -> None:
    stub1, stub2 = stubs
    created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=with_consent_at(seconds, nanos)))
    assert created.consents[1].decide_time == Timestamp(seconds=seconds, nanos=nanos)
    await stub1.UpdateProfile(
        v1.UpdateProfileRequest(
            profile=v1.Profile(user_id="u1", display_name="Ada"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    read = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    assert list(read.consents) == list(created.consents)


@pytest.mark.parametrize(
    ("languages", "field", "reason"),
    [
        (["en,fr"], "profile.preferences.content_languages[0]", "INVALID_ARGUMENT"),
        ([""], "profile.preferences.content_languages[0]", "INVALID_ARGUMENT"),
        (["en", ""], "profile.preferences.content_languages[1]", "INVALID_ARGUMENT"),
        (["en", "en," * 400], "profile.preferences.content_languages[1]", "INVALID_ARGUMENT"),
        (["en", "x" * 36], "profile.preferences.content_languages[1]", "INVALID_ARGUMENT"),
        (["en"] * 17, "profile.preferences.content_languages", "LIMIT_EXCEEDED"),
    ],
)
async def test_v2_content_languages_are_checked_one_tag_at_a_time_in_v2_names(
    stubs: Stubs, languages: list[str], field: str, reason: str
) -> None:
    _, stub2 = stubs
    bad = full_v2()
    bad.preferences.content_languages[:] = languages
    unpacked = await fails(
        stub2.CreateProfile(v2.CreateProfileRequest(profile=bad)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
    )
    assert violated_fields(unpacked) == [field]
    created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=full_v2()))
    unpacked = await fails(
        stub2.UpdateProfile(
            v2.UpdateProfileRequest(
                profile=bad, update_mask=field_mask_pb2.FieldMask(paths=["preferences.content_languages"])
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
    )
    assert violated_fields(unpacked) == [field]
    assert await stub2.GetProfile(v2.GetProfileRequest(user_id="u1")) == created


async def test_v2_preferences_never_meet_v1s_limit_on_attributes(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    own = {f"k{i}": "v" for i in range(64)}
    await stub1.CreateProfile(v1.CreateProfileRequest(profile=v1.Profile(user_id="u1", attributes=own)))
    written = await stub2.UpdateProfile(
        v2.UpdateProfileRequest(
            profile=full_v2(), update_mask=field_mask_pb2.FieldMask(paths=["preferences"])
        )
    )
    assert written.preferences == full_v2().preferences
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id="u1"))
    assert len(old.attributes) == 64 + 3
    # What v1 reads, v1 can write back unchanged: its 64 counts its own attributes, not the reserved ones.
    await stub1.UpdateProfile(v1.UpdateProfileRequest(profile=old))
    assert (await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))).preferences == full_v2().preferences


async def test_a_v2_write_back_keeps_how_v1_spelled_a_preference(stubs: Stubs) -> None:
    stub1, stub2 = stubs
    attributes = {"pref.marketing_emails": "false", "pref.languages": "en,fr", "tier": "gold"}
    await stub1.CreateProfile(
        v1.CreateProfileRequest(profile=v1.Profile(user_id="u1", attributes=attributes))
    )
    read = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    assert read.preferences == v2.Preferences(content_languages=["en", "fr"], marketing_emails=False)
    read.name.given_name = "Ada"
    await stub2.UpdateProfile(v2.UpdateProfileRequest(profile=read))  # every field, as read
    assert dict((await stub1.GetProfile(v1.GetProfileRequest(user_id="u1"))).attributes) == attributes


async def test_pref_attributes_from_before_v2_are_kept_and_never_block_other_writes(
    stubs: Stubs, store: Store
) -> None:
    # v1 servers before v2 took any "pref." attribute; such records must stay writable through both versions.
    legacy = {
        "pref.theme": "blue",
        "pref.languages": "English, French",
        "pref.x": "1",
        "pref.marketing_emails": "y",
    }
    await store.put("u1", ProfileData(user_id="u1", attributes=legacy).to_bytes(), if_match=ABSENT)
    stub1, stub2 = stubs
    await stub1.UpdateProfile(
        v1.UpdateProfileRequest(
            profile=v1.Profile(user_id="u1", display_name="Ada"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    read = await stub2.GetProfile(v2.GetProfileRequest(user_id="u1"))
    read.name.given_name = "Ada"
    await stub2.UpdateProfile(v2.UpdateProfileRequest(profile=read))  # every field, as read
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id="u1"))
    assert dict(old.attributes) == legacy
    await stub1.UpdateProfile(v1.UpdateProfileRequest(profile=old))  # every field, as read

    old.etag = read.etag = ""
    old.attributes["pref.x"] = "2"  # a change is judged: the key is reserved
    unpacked = await fails(
        stub1.UpdateProfile(v1.UpdateProfileRequest(profile=old)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert violated_fields(unpacked) == ["profile.attributes['pref.x']"]
    read.preferences.content_languages.append("de")
    unpacked = await fails(
        stub2.UpdateProfile(v2.UpdateProfileRequest(profile=read)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert violated_fields(unpacked) == ["profile.preferences.content_languages[1]"]
