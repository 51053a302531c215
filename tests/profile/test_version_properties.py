"""Properties of v1 and v2 sharing one stored record, through a real server over SQLite: each version reads
back exactly what it wrote, and a write through one version keeps exactly what only the other shows."""

from __future__ import annotations

import itertools
import re
import string
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.profile.v2 import profile_pb2 as v2
from microstate.profile.v2 import profile_pb2_grpc as v2_grpc
from microstate.server import wellknown
from microstate.server.profile import preferences
from microstate.server.profile.preferences import MAX_LANGUAGES
from microstate.server.profile.rules import PURPOSE_PATTERN
from tests.support.rpc_errors import details, violated_fields

# Each example is a few calls to a real server whose store syncs every write; the server and store are
# shared by a test's examples, each example uses a profile of its own.
SERVER_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # protobuf strings are UTF-8
language_tags = st.builds(
    lambda primary, subtags: "-".join([primary, *subtags]),
    st.text(string.ascii_letters, min_size=2, max_size=8),
    st.lists(st.text(string.ascii_letters + string.digits, min_size=1, max_size=8), max_size=3),
)
locales = st.one_of(st.just(""), language_tags)
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
timestamps = st.builds(
    wellknown.timestamp,
    st.integers(
        wellknown.MIN_TIMESTAMP_SECONDS * wellknown.NANOS_PER_SECOND,
        (wellknown.MAX_TIMESTAMP_SECONDS + 1) * wellknown.NANOS_PER_SECOND - 1,
    ),
)
consents = st.lists(
    st.builds(
        v2.Consent,
        purpose=st.from_regex(PURPOSE_PATTERN, fullmatch=True),
        granted=st.booleans(),
        decide_time=timestamps,
    ),
    max_size=4,
    unique_by=lambda consent: consent.purpose,
)
v2_profiles = st.builds(
    v2.Profile,
    name=st.builds(v2.PersonName, display_name=texts, given_name=texts, family_name=texts),
    locale=locales,
    preferences=st.builds(
        v2.Preferences,
        theme=st.sampled_from(v2.Theme.values()),
        content_languages=st.lists(language_tags, max_size=MAX_LANGUAGES),
        marketing_emails=st.booleans(),
    ),
    consents=consents,
    embedding=st.builds(
        v2.Embedding, values=st.lists(float32s, max_size=8), model=texts, model_version=texts
    ),
)
own_attributes = st.dictionaries(
    texts.filter(lambda key: key and not key.startswith(preferences.PREFIX)), texts, max_size=6
)
preference_attributes = st.fixed_dictionaries(
    {},
    optional={
        preferences.THEME: st.sampled_from(preferences.THEMES),
        preferences.LANGUAGES: st.lists(language_tags, min_size=1, max_size=MAX_LANGUAGES).map(",".join),
        preferences.MARKETING_EMAILS: st.sampled_from(["true", "false"]),
    },
)
v1_profiles = st.builds(
    v1.Profile,
    display_name=texts,
    locale=locales,
    attributes=st.builds(lambda own, prefs: {**own, **prefs}, own_attributes, preference_attributes),
    embedding=st.lists(float32s, max_size=8),
)

# Anything a client may send in the v2 fields whose mapping is not one to one (v1 shows the languages joined
# by ","; decide_time is int64 nanoseconds where it fits), valid or not.
any_languages = st.lists(
    st.one_of(language_tags, texts, st.lists(language_tags).map(",".join)), max_size=MAX_LANGUAGES + 2
)
any_timestamps = st.builds(
    Timestamp, seconds=st.integers(-(2**63), 2**63 - 1), nanos=st.integers(-(2**31), 2**31 - 1)
)

_user_ids = itertools.count()
_SEGMENT = re.compile(r"(\w+)(?:\[\d+\])?")


def stubs(channel: grpc.aio.Channel) -> tuple[v1_grpc.ProfileServiceStub, v2_grpc.ProfileServiceStub]:
    return v1_grpc.ProfileServiceStub(channel), v2_grpc.ProfileServiceStub(channel)


def fresh(profile: v1.Profile | v2.Profile) -> None:
    profile.user_id = f"p{next(_user_ids)}"


def as_written(expected: v1.Profile | v2.Profile, got: v1.Profile | v2.Profile) -> None:
    """`expected` with the fields the server sets taken from `got`."""
    expected.etag = got.etag
    expected.create_time.CopyFrom(got.create_time)
    expected.update_time.CopyFrom(got.update_time)


def names_a_v2_field(path: str) -> bool:
    """Whether `path` (as a BadRequest names it) is a field of a v2 CreateProfileRequest, like
    profile.consents[1].decide_time."""
    descriptor: Descriptor | None = v2.CreateProfileRequest.DESCRIPTOR
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment)
        if descriptor is None or match is None or match[1] not in descriptor.fields_by_name:
            return False
        descriptor = descriptor.fields_by_name[match[1]].message_type
    return True


def seen_by_v1(prefs: v2.Preferences) -> dict[str, str]:
    """The documented mapping: what v1 shows of v2's preferences."""
    shown = {}
    if prefs.theme:
        shown[preferences.THEME] = v2.Theme.Name(prefs.theme).removeprefix("THEME_").lower()
    if prefs.content_languages:
        shown[preferences.LANGUAGES] = ",".join(prefs.content_languages)
    if prefs.marketing_emails:
        shown[preferences.MARKETING_EMAILS] = "true"
    return shown


async def reads_back_exactly(stub: Any, pb: ModuleType, profile: v1.Profile | v2.Profile) -> None:
    """Through one version: `profile` created reads back as sent, also after a write back of what was read."""
    fresh(profile)
    created = await stub.CreateProfile(pb.CreateProfileRequest(profile=profile))
    as_written(profile, created)
    assert created == profile
    assert await stub.GetProfile(pb.GetProfileRequest(user_id=profile.user_id)) == created
    rewritten = await stub.UpdateProfile(pb.UpdateProfileRequest(profile=created))  # every field, as read
    as_written(profile, rewritten)
    assert rewritten == profile


@SERVER_PROPERTY
@given(profile=v2_profiles)
async def test_any_v2_profile_reads_back_exactly_through_v2(
    channel: grpc.aio.Channel, profile: v2.Profile
) -> None:
    await reads_back_exactly(v2_grpc.ProfileServiceStub(channel), v2, profile)


@SERVER_PROPERTY
@given(profile=v2_profiles, languages=any_languages, decide_times=st.lists(any_timestamps, max_size=2))
async def test_any_v2_input_reads_back_exactly_or_is_refused_naming_a_v2_field(
    channel: grpc.aio.Channel, profile: v2.Profile, languages: list[str], decide_times: list[Timestamp]
) -> None:
    _, stub2 = stubs(channel)
    fresh(profile)
    profile.preferences.content_languages[:] = languages
    for index, decide_time in enumerate(decide_times):
        profile.consents.add(purpose=f"sent.{index}", decide_time=decide_time)
    try:
        created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=profile))
    except grpc.aio.AioRpcError as refused:
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
        fields = violated_fields(details(refused))
        assert fields and all(map(names_a_v2_field, fields)), fields
        return
    as_written(profile, created)
    assert created == profile


@SERVER_PROPERTY
@given(profile=v1_profiles)
async def test_any_v1_profile_reads_back_exactly_through_v1(
    channel: grpc.aio.Channel, profile: v1.Profile
) -> None:
    await reads_back_exactly(v1_grpc.ProfileServiceStub(channel), v1, profile)


@SERVER_PROPERTY
@given(profile=v2_profiles, display_name=texts, locale=locales, attributes=own_attributes)
async def test_a_v1_write_of_what_v1_shows_keeps_every_v2_field(
    channel: grpc.aio.Channel, profile: v2.Profile, display_name: str, locale: str, attributes: dict[str, str]
) -> None:
    stub1, stub2 = stubs(channel)
    fresh(profile)
    created = await stub2.CreateProfile(v2.CreateProfileRequest(profile=profile))
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id=profile.user_id))
    assert dict(old.attributes) == seen_by_v1(profile.preferences)
    assert (old.display_name, old.locale, old.embedding) == (
        profile.name.display_name,
        profile.locale,
        profile.embedding.values,
    )
    old.display_name, old.locale = display_name, locale
    old.attributes.update(attributes)
    await stub1.UpdateProfile(v1.UpdateProfileRequest(profile=old))  # every field v1 shows
    new = await stub2.GetProfile(v2.GetProfileRequest(user_id=profile.user_id))
    created.name.display_name, created.locale = display_name, locale
    as_written(created, new)
    assert new == created


@SERVER_PROPERTY
@given(profile=v1_profiles, name=st.builds(v2.PersonName, given_name=texts, family_name=texts), add=consents)
async def test_a_v2_write_of_what_v2_shows_keeps_every_v1_field(
    channel: grpc.aio.Channel, profile: v1.Profile, name: v2.PersonName, add: list[v2.Consent]
) -> None:
    stub1, stub2 = stubs(channel)
    fresh(profile)
    created = await stub1.CreateProfile(v1.CreateProfileRequest(profile=profile))
    read = await stub2.GetProfile(v2.GetProfileRequest(user_id=profile.user_id))
    read.name.given_name, read.name.family_name = name.given_name, name.family_name
    read.consents.extend(add)
    await stub2.UpdateProfile(v2.UpdateProfileRequest(profile=read))  # every field v2 shows
    old = await stub1.GetProfile(v1.GetProfileRequest(user_id=profile.user_id))
    as_written(created, old)
    assert old == created
