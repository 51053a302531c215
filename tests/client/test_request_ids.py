"""Writes apply once however often they are sent (AIP-155): against the real profile server, with answers
lost after the write was applied, retries sent by hand, and ids reused for other requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from microstate.client.errors import AlreadyExists, NotFound
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.kit.idempotency import KEEP
from microstate.server.store.base import Store
from tests.client.conftest import fast_options, profile_server
from tests.client.harness import RestartableServer
from tests.support.unary_hooks import Behaviour, UnaryHook


class LoseAnswers(UnaryHook):
    """The first `count` calls of each method run, and then their answer is lost (UNAVAILABLE), as when a
    server dies or a connection breaks after the write was applied."""

    def __init__(self, count: int = 1) -> None:
        super().__init__(["/microstate.profile.v1.ProfileService/"])
        self.lost: dict[str, int] = {}
        self._count = count

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        async def lose(request: Any, context: grpc.aio.ServicerContext) -> Any:
            answer = await handler(request, context)
            if self.lost.get(method, 0) < self._count:
                self.lost[method] = self.lost.get(method, 0) + 1
                await context.abort(grpc.StatusCode.UNAVAILABLE, "test hook: the answer is lost")
            return answer

        return lose


@pytest.fixture
async def losing(store: Store) -> AsyncIterator[tuple[LoseAnswers, RestartableServer]]:
    hook = LoseAnswers()
    server = profile_server(store, [hook])
    await server.start()
    yield hook, server
    await server.stop()


async def test_a_write_whose_answer_is_lost_is_sent_again_and_applies_once(
    losing: tuple[LoseAnswers, RestartableServer], store: Store
) -> None:
    hook, server = losing
    async with ProfileClient(options=fast_options(server.target)) as client:
        created = await client.create(Profile(user_id="u1", display_name="One"))
        updated = await client.update(
            Profile(user_id="u1", display_name="Two", etag=created.etag), ["display_name"]
        )
        await client.delete("u1", must_exist=False)
    assert hook.lost == {
        "/microstate.profile.v1.ProfileService/CreateProfile": 1,
        "/microstate.profile.v1.ProfileService/UpdateProfile": 1,
        "/microstate.profile.v1.ProfileService/DeleteProfile": 1,
    }
    # One create, one update, one delete: the resent writes found their request ids and applied nothing.
    assert int(created.etag.strip('W/"')) + 1 == int(updated.etag.strip('W/"'))
    assert updated.display_name == "Two"
    assert await store.get("u1") is None


async def test_retries_by_hand_apply_once_and_reused_ids_are_refused(real_server: RestartableServer) -> None:
    async with grpc.aio.insecure_channel(real_server.target) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        create = pb.CreateProfileRequest(profile=pb.Profile(user_id="u1", display_name="A"), request_id="c-1")
        first = await stub.CreateProfile(create)
        assert await stub.CreateProfile(create) == first
        other = pb.CreateProfileRequest(profile=pb.Profile(user_id="u1", display_name="B"), request_id="c-1")
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await stub.CreateProfile(other)
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "REQUEST_ID_ALREADY_USED" in str(reused.value.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as exists:
            await stub.CreateProfile(
                pb.CreateProfileRequest(profile=pb.Profile(user_id="u1"), request_id="c-2")
            )
        assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS

        update = pb.UpdateProfileRequest(
            profile=pb.Profile(user_id="u1", display_name="C", etag=first.etag), request_id="u-1"
        )
        update.update_mask.paths.append("display_name")
        applied = await stub.UpdateProfile(update)
        # Another writer comes in between; the retry (with its old etag) still applies nothing.
        between = pb.UpdateProfileRequest(
            profile=pb.Profile(user_id="u1", display_name="D"), request_id="u-2"
        )
        between.update_mask.paths.append("display_name")
        latest = await stub.UpdateProfile(between)
        assert (await stub.UpdateProfile(update)) == latest != applied
        assert (await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))).display_name == "D"

        # A profile remembers its last KEEP request ids: beyond that, a retry is a new write (here refused,
        # because its etag is long gone).
        for n in range(KEEP):
            more = pb.UpdateProfileRequest(
                profile=pb.Profile(user_id="u1", display_name=f"n{n}"), request_id=f"m-{n}"
            )
            more.update_mask.paths.append("display_name")
            await stub.UpdateProfile(more)
        with pytest.raises(grpc.aio.AioRpcError) as forgotten:
            await stub.UpdateProfile(update)
        assert forgotten.value.code() == grpc.StatusCode.ABORTED

        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreateProfile(
                pb.CreateProfileRequest(profile=pb.Profile(user_id="u2"), request_id="has space")
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        await stub.DeleteProfile(pb.DeleteProfileRequest(user_id="u1", request_id="d-1"))
        await stub.DeleteProfile(
            pb.DeleteProfileRequest(user_id="u1", request_id="d-1")
        )  # the retry succeeds
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.DeleteProfile(pb.DeleteProfileRequest(user_id="u1"))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_sdk_reports_a_missing_profile_unless_told_it_need_not_exist(
    real_server: RestartableServer,
) -> None:
    async with ProfileClient(options=fast_options(real_server.target)) as client:
        with pytest.raises(NotFound):
            await client.delete("nobody")
        await client.delete("nobody", must_exist=False)
        await client.create(Profile(user_id="u1"), request_id="mine")
        with pytest.raises(AlreadyExists):
            await client.create(Profile(user_id="u1", display_name="other"), request_id="mine")
