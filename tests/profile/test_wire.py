"""GetProfile and BatchGetProfiles answer with cached wire bytes joined by hand (servicer.py, wire.py): the
bytes must be exactly what serializing the normally built response gives, and never outlive a change."""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from microstate.profile.v1 import profile_pb2 as v1_pb
from microstate.server.kit import wire
from microstate.server.profile import v1, v2
from microstate.server.profile.domain import ProfileDomain
from microstate.server.profile.model import Consent, ProfileData, StoredProfile
from microstate.server.profile.servicer import Codec, ProfileServicer
from microstate.server.store.base import Store

CODEC_VALUES = [v1.CODEC, v2.CODEC]
CODECS = [pytest.param(codec, id=codec.pb.__name__.split(".")[-2]) for codec in CODEC_VALUES]


def rich_profile(user_id: str) -> ProfileData:
    """Every field set, with several map entries (their order on the wire is where bytes could differ)."""
    return ProfileData(
        user_id=user_id,
        display_name=f"Ada {user_id}",
        locale="en-GB",
        attributes={"tier": "gold", "region": "eu-west", "pref.theme": "dark", "pref.languages": "en,fr"},
        embedding=array.array("f", [0.5, -1.25, 3.0] * 50),
        given_name="Ada",
        family_name="Lovelace",
        consents=(Consent("ads", True, 1_700_000_000_123_456_789), Consent("analytics", False, 5)),
        embedding_model="minilm",
        embedding_model_version="6",
    )


async def seed(store: Store, user_ids: Sequence[str]) -> None:
    domain = ProfileDomain(store)
    for user_id in user_ids:
        await domain.create(rich_profile(user_id), contract=v2.CONTRACT)


async def call_raw(channel: grpc.aio.Channel, codec: Codec, method: str, request: Any) -> bytes:
    """The response bytes exactly as the server sent them."""
    call = channel.unary_unary(
        f"/{codec.service_name}/{method}", request_serializer=type(request).SerializeToString
    )
    response: bytes = await call(request)
    return response


async def normal_batch_response(store: Store, codec: Codec, user_ids: Sequence[str]) -> bytes:
    """What the servicer answered before the wire cache: the response message, built and serialized."""
    found, missing = await ProfileDomain(store).batch_get(user_ids)
    response = codec.pb.BatchGetProfilesResponse(
        profiles=[codec.to_message(p) for p in found], missing_user_ids=missing
    )
    return response.SerializeToString(deterministic=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    "user_ids",
    [
        ["u1"],
        ["u3", "u1", "u2"],
        ["u2", "nobody", "u1", "u2", "nobody", "u1"],  # duplicates and missing, answered once, in order
        ["nobody", "ghost"],
        ["u3", "a.b:c@d-e", "u3"],
    ],
)
async def test_batch_get_bytes_equal_the_serialized_response(
    channel: grpc.aio.Channel, store: Store, codec: Codec, user_ids: list[str]
) -> None:
    await seed(store, ["u1", "u2", "u3"])
    request = codec.pb.BatchGetProfilesRequest(user_ids=user_ids)
    for _ in range(2):  # a cold cache, then a warm one
        sent = await call_raw(channel, codec, "BatchGetProfiles", request)
        assert sent == await normal_batch_response(store, codec, user_ids)


@pytest.mark.parametrize("codec", CODECS)
async def test_get_bytes_equal_the_serialized_profile(
    channel: grpc.aio.Channel, store: Store, codec: Codec
) -> None:
    await seed(store, ["u1"])
    request = codec.pb.GetProfileRequest(user_id="u1")
    for _ in range(2):
        sent = await call_raw(channel, codec, "GetProfile", request)
        stored = await ProfileDomain(store).get("u1")
        assert sent == codec.to_message(stored).SerializeToString(deterministic=True)


async def test_a_change_through_either_version_is_served_at_once(
    channel: grpc.aio.Channel, store: Store
) -> None:
    await seed(store, ["u1", "u2"])

    async def reads(codec: Codec) -> list[Any]:
        """u1 as BatchGetProfiles and GetProfile of `codec`'s version return it."""
        batch = codec.pb.BatchGetProfilesRequest(user_ids=["u1"])
        batch_response = await call_raw(channel, codec, "BatchGetProfiles", batch)
        get_response = await call_raw(channel, codec, "GetProfile", codec.pb.GetProfileRequest(user_id="u1"))
        return [
            codec.pb.BatchGetProfilesResponse.FromString(batch_response).profiles[0],
            codec.pb.Profile.FromString(get_response),
        ]

    for writer, locale in [(v1.CODEC, "fr"), (v2.CODEC, "de")]:
        for codec in CODEC_VALUES:  # warm every cache
            await reads(codec)
        update = writer.pb.UpdateProfileRequest(
            profile=writer.pb.Profile(user_id="u1", locale=locale),
            update_mask=field_mask_pb2.FieldMask(paths=["locale"]),
        )
        updated = writer.pb.Profile.FromString(await call_raw(channel, writer, "UpdateProfile", update))
        for codec in CODEC_VALUES:
            assert [(p.locale, p.etag) for p in await reads(codec)] == [(locale, updated.etag)] * 2

    # A write this server did not make (another server process on the same store).
    record = await store.get("u1")
    assert record is not None
    await store.put("u1", replace(ProfileData.from_bytes(record.value), locale="it").to_bytes())
    for codec in CODEC_VALUES:
        assert [p.locale for p in await reads(codec)] == ["it", "it"]


class OneProfileDomain:
    """A domain stand-in that returns whatever profile object the test sets."""

    def __init__(self, stored: StoredProfile) -> None:
        self.stored = stored

    async def get(self, user_id: str) -> StoredProfile:
        return self.stored

    async def batch_get(self, user_ids: Sequence[str]) -> tuple[list[StoredProfile], list[str]]:
        return [self.stored], []


@pytest.mark.parametrize("codec", CODECS)
async def test_new_content_under_an_unchanged_revision_is_not_served_from_old_bytes(codec: Codec) -> None:
    """E.g. a wiped and refilled store: the domain decodes anew, so the servicer must not go by the etag."""
    domain = OneProfileDomain(StoredProfile(rich_profile("u1"), 7))
    servicer = ProfileServicer(domain, codec)  # type: ignore[arg-type]
    get, batch = codec.pb.GetProfileRequest(user_id="u1"), codec.pb.BatchGetProfilesRequest(user_ids=["u1"])
    old = await servicer.GetProfile(get, None), await servicer.BatchGetProfiles(batch, None)
    domain.stored = StoredProfile(replace(rich_profile("u1"), locale="fr"), 7)
    new = await servicer.GetProfile(get, None), await servicer.BatchGetProfiles(batch, None)
    assert new[0] != old[0] and new[1] != old[1]
    assert codec.pb.Profile.FromString(new[0]).locale == "fr"
    assert codec.pb.BatchGetProfilesResponse.FromString(new[1]).profiles[0].locale == "fr"


@pytest.mark.parametrize(
    "text", ["", "x", "x" * 127, "x" * 128, "é" * 150, "x" * 16_383, "x" * 16_384, "x" * 2**21]
)
def test_repeated_fields_match_protobuf_at_every_length_width(text: str) -> None:
    expected = v1_pb.BatchGetProfilesResponse(missing_user_ids=[text, "u1", text]).SerializeToString()
    assert wire.repeated(2, [text.encode(), b"u1", text.encode()]) == expected
