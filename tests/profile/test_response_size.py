"""Every response fits in 4 MiB, gRPC's default receive limit: List pages are cut short with a token
that continues (AIP-158), a BatchGet that cannot fit is refused with its size, and no valid profile
comes near the limit."""

from __future__ import annotations

import array
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microstate.server.config import MAX_RESPONSE_BYTES, MIB
from microstate.server.profile import MICROSTATE, rules, v1, v2
from microstate.server.profile import domain as profile_domain
from microstate.server.profile.domain import ProfileDomain
from microstate.server.profile.model import Consent, ProfileData, StoredProfile
from microstate.server.profile.servicer import Codec
from microstate.server.responses import PAGE_TOKEN_ROOM
from microstate.server.store.base import Store
from tests.support.inproc import serve_in_process

CODECS = [pytest.param(codec, id=codec.pb.__name__.split(".")[-2]) for codec in (v1.CODEC, v2.CODEC)]
WIDE = "\U0001f600"  # four bytes in UTF-8: the most bytes a character of a limited field can take


def large_profile(user_id: str) -> ProfileData:
    """~313 KB through v1 (most of it free-form attributes), ~23 KB through v2, which shows less."""
    return replace(largest_valid_profile(), user_id=user_id)


def largest_valid_profile() -> ProfileData:
    """Every limit of every version at its maximum, with the widest characters."""
    return ProfileData(
        user_id="u" * 128,
        display_name=WIDE * rules.MAX_NAME,
        locale="abcdefgh-" + "-".join(["abcdefg1"] * 2) + "-abcdefg",
        attributes={
            WIDE * (rules.MAX_ATTRIBUTE_KEY - 2) + f"{i:02}": WIDE * rules.MAX_ATTRIBUTE_VALUE
            for i in range(rules.MAX_ATTRIBUTES)
        },
        embedding=array.array("f", [1.5] * rules.MAX_EMBEDDING),
        create_time_ns=2**62,
        update_time_ns=2**62,
        given_name=WIDE * rules.MAX_NAME,
        family_name=WIDE * rules.MAX_NAME,
        consents=tuple(Consent(f"{i:02}".ljust(64, "x"), True, 2**62) for i in range(rules.MAX_CONSENTS)),
        embedding_model=WIDE * rules.MAX_MODEL,
        embedding_model_version=WIDE * rules.MAX_MODEL_VERSION,
    )


async def seed_large(store: Store, codec: Codec) -> list[str]:
    """Enough large profiles to make a response of 1.2 times MAX_RESPONSE_BYTES in `codec`'s version."""
    size = codec.to_message(StoredProfile(large_profile("big-000"), 1)).ByteSize()
    domain = ProfileDomain(store)
    user_ids = [f"big-{i:03}" for i in range(MAX_RESPONSE_BYTES * 6 // 5 // size + 1)]
    for user_id in user_ids:
        await domain.create(large_profile(user_id), contract=v1.CONTRACT)
    return user_ids


def call(channel: grpc.aio.Channel, codec: Codec, method: str, response: Any) -> Any:
    return channel.unary_unary(
        f"/{codec.service_name}/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response.FromString,
    )


@pytest.mark.parametrize("codec", CODECS)
async def test_list_pages_fit_a_default_client_and_their_tokens_walk_everything(
    channel: grpc.aio.Channel, store: Store, codec: Codec
) -> None:
    user_ids = await seed_large(store, codec)
    list_profiles = call(channel, codec, "ListProfiles", codec.pb.ListProfilesResponse)
    listed: list[str] = []
    page_lengths: list[int] = []
    token = ""
    while True:
        # The channel keeps gRPC's default receive limit: a page over 4 MiB would fail here.
        page = await list_profiles(
            codec.pb.ListProfilesRequest(page_size=1000, page_token=token, user_id_prefix="big-"), timeout=30
        )
        assert page.ByteSize() <= MAX_RESPONSE_BYTES
        listed += [profile.user_id for profile in page.profiles]
        page_lengths.append(len(page.profiles))
        if not (token := page.next_page_token):
            break
    assert listed == user_ids  # every profile once, in order, across pages cut short
    assert len(page_lengths) > 1 and all(0 < length < len(user_ids) for length in page_lengths)


@pytest.mark.parametrize("codec", CODECS)
async def test_a_batch_over_the_limit_is_refused_with_its_size_not_cut_short(
    store: Store, codec: Codec
) -> None:
    user_ids = await seed_large(store, codec)
    # A client that could receive it all: the server itself must refuse.
    async with (
        serve_in_process(MICROSTATE, store) as target,
        grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * MIB)]) as roomy,
    ):
        batch_get = call(roomy, codec, "BatchGetProfiles", codec.pb.BatchGetProfilesResponse)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await batch_get(codec.pb.BatchGetProfilesRequest(user_ids=user_ids), timeout=30)
        fits = await batch_get(codec.pb.BatchGetProfilesRequest(user_ids=user_ids[:5]), timeout=30)

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(refused.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("RESPONSE_TOO_LARGE", "microstate.dev")
    assert int(info.metadata["max_response_bytes"]) == MAX_RESPONSE_BYTES
    assert int(info.metadata["response_bytes"]) > MAX_RESPONSE_BYTES
    assert [profile.user_id for profile in fits.profiles] == user_ids[:5]


@pytest.mark.parametrize("codec", CODECS)
def test_the_largest_valid_profile_and_token_fit_many_times_over(codec: Codec) -> None:
    data = largest_valid_profile()
    rules.check_profile(data, lambda name: name)  # valid, so a page or a Get can always hold it
    size = codec.to_message(StoredProfile(data, 2**62)).ByteSize()
    assert size < MAX_RESPONSE_BYTES // 8
    token = profile_domain.PAGE_TOKENS.encode("u" * 128, "u" * 128)  # the longest a page can issue
    assert len(codec.pb.ListProfilesResponse(next_page_token=token).SerializeToString()) < PAGE_TOKEN_ROOM
