"""Authentication in the shared runtime: health stays open, reflection is a setting, mTLS identities, the
principal handlers see, start-up refusals, and the SDK's bearer tokens (static, or asked at every call)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from microstate.client import TlsOptions
from microstate.client.errors import PermissionDenied, Unauthenticated
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from microstate.client.session.v1 import SessionClient
from microstate.client.session.v1 import Source as SessionSource
from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc as pb_grpc
from microstate.server import probe
from microstate.server.config import ConfigError, ServerConfig
from microstate.server.kit import wire
from microstate.server.kit.access import principal
from microstate.server.profile import MICROSTATE as PROFILE
from microstate.server.profile import v1
from microstate.server.runtime import Runtime
from microstate.server.security import Security
from microstate.server.store.roles import Stores
from tests.client.conftest import fast_options
from tests.security.conftest import Serve, client_tls, server_certificate
from tests.support.issuer import ISSUER, Issuer
from tests.support.processes import until
from tests.support.rpc_errors import fails

WORKER = "worker.microstate.test"


def target_of(runtime: Runtime) -> str:
    assert runtime.endpoint is not None
    return runtime.endpoint.target


async def test_health_answers_without_credentials_and_reflection_is_a_setting(
    serve: Serve, issuer: Issuer
) -> None:
    async with serve("profile", **issuer.settings()) as runtime:
        statuses = await probe.check_all(target_of(runtime))
    assert statuses == {"": "SERVING", **{name: "SERVING" for name in PROFILE.service_names}}
    async with serve("profile", reflection="off", **issuer.settings()) as runtime:
        statuses = await probe.check_all(target_of(runtime))  # reflection lists nothing now
    assert statuses == {"": "SERVING"}


class WhoAmI:
    """A profile v1 servicer whose GetProfile answers with the caller the handler sees."""

    async def GetProfile(self, request: Any, context: grpc.aio.ServicerContext) -> pb.Profile:
        caller = principal()
        scopes = ",".join(sorted(caller.scopes))
        return pb.Profile(user_id=f"{caller.kind}:{caller.name}", display_name=f"{caller.issuer} {scopes}")

    def __getattr__(self, name: str) -> Any:
        async def unused(request: Any, context: grpc.aio.ServicerContext) -> None:
            raise NotImplementedError(name)

        return unused


def attach_whoami(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
    wire.add_service(server, v1.CODEC.service, WhoAmI())


WHOAMI = dataclasses.replace(PROFILE, service_names=(v1.CODEC.service_name,), attach=attach_whoami)


async def test_handlers_see_the_principal_of_a_token(serve: Serve, issuer: Issuer) -> None:
    token = issuer.token("profile.read", "extra", subject="svc-recommender")
    async with (
        serve(WHOAMI, **issuer.settings()) as runtime,
        grpc.aio.insecure_channel(target_of(runtime)) as channel,
    ):
        answer = await pb_grpc.ProfileServiceStub(channel).GetProfile(
            pb.GetProfileRequest(user_id="u"), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert answer.user_id == "token:svc-recommender"
    assert answer.display_name == f"{ISSUER} extra,profile.read"


async def test_without_authentication_handlers_see_an_anonymous_caller(serve: Serve) -> None:
    async with serve(WHOAMI) as runtime, grpc.aio.insecure_channel(target_of(runtime)) as channel:
        answer = await pb_grpc.ProfileServiceStub(channel).GetProfile(pb.GetProfileRequest(user_id="u"))
    assert answer.user_id == "anonymous:"


async def test_a_client_certificate_is_a_principal_with_the_scopes_mapped_to_its_name(
    serve: Serve, ca: trustme.CA, tmp_path: Path, issuer: Issuer
) -> None:
    cert, key = server_certificate(ca, tmp_path)
    ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    settings = {
        "tls_cert": cert,
        "tls_key": key,
        "tls_client_ca": tmp_path / "clients.pem",
        "auth_mtls_scopes": f"{WORKER}=profile.read other.test=profile.write",
        **issuer.settings(),
    }
    async with serve(WHOAMI, **settings) as runtime:
        async with ProfileClient(
            options=fast_options(target_of(runtime), tls=client_tls(ca, WORKER))
        ) as client:
            read = await client.get("u")
        assert (read.value.user_id, read.value.display_name) == (f"certificate:{WORKER}", " profile.read")
    async with serve("profile", **settings) as runtime:
        target = target_of(runtime)
        async with ProfileClient(options=fast_options(target, tls=client_tls(ca, WORKER))) as client:
            with pytest.raises(PermissionDenied) as denied:  # mapped to profile.read only
                await client.create(Profile(user_id="u1"))
            assert denied.value.reason == "SCOPE_MISSING"
        async with ProfileClient(options=fast_options(target, tls=client_tls(ca, "stranger.test"))) as client:
            with pytest.raises(PermissionDenied):  # authenticated by its certificate, granted nothing
                await client.create(Profile(user_id="u1"))
            # A token, when sent, names the caller rather than the connection's certificate.
            token = issuer.token("profile.write")
            await client.create(Profile(user_id="u1"), metadata={"authorization": f"Bearer {token}"})


async def test_the_sdk_sends_a_static_token(serve: Serve, issuer: Issuer) -> None:
    async with serve("profile", **issuer.settings()) as runtime:
        target = target_of(runtime)
        token = issuer.token("profile.read", "profile.write")
        async with ProfileClient(options=fast_options(target, token=token)) as client:
            created = await client.create(Profile(user_id="u1", display_name="Ada"))

        def read_with_the_sync_client() -> Profile:
            with SyncProfileClient(options=fast_options(target, token=token)) as sync_client:
                return sync_client.get("u1").value

        assert await asyncio.to_thread(read_with_the_sync_client) == created
        async with ProfileClient(options=fast_options(target)) as anonymous:
            with pytest.raises(Unauthenticated) as refused:
                await anonymous.create(Profile(user_id="u2"))
        assert refused.value.reason == "CREDENTIALS_MISSING"


async def test_the_sdk_asks_a_token_callable_at_every_call(serve: Serve, issuer: Issuer) -> None:
    current = [issuer.token("profile.read")]
    asked: list[str] = []

    def token() -> str:
        asked.append(current[0])
        return current[0]

    async with (
        serve("profile", **issuer.settings()) as runtime,
        ProfileClient(options=fast_options(target_of(runtime), token=token)) as client,
    ):
        with pytest.raises(PermissionDenied):
            await client.create(Profile(user_id="u1"))
        current[0] = issuer.token("profile.read", "profile.write")  # refreshed, with more scopes
        await client.create(Profile(user_id="u1"))
        current[0] = issuer.token("profile.read", expires_in=-3600)
        with pytest.raises(Unauthenticated) as expired:
            await client.create(Profile(user_id="u2"))
    assert expired.value.reason == "TOKEN_EXPIRED"
    assert len(set(asked)) == 3


def test_the_sdk_refuses_to_send_a_token_in_clear_off_this_machine() -> None:
    with pytest.raises(ValueError, match="in clear"):
        ProfileClient(options=fast_options("10.1.2.3:50051", token="t"))
    ProfileClient(options=fast_options("10.1.2.3:50051", token="t", tls=TlsOptions()))
    for loopback in ("127.0.0.1:1", "localhost:1", "[::1]:1", "unix:/tmp/s.sock"):
        ProfileClient(options=fast_options(loopback, token="t"))


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"host": "0.0.0.0"}, "needs authentication"),
        ({"host": "10.0.0.1"}, "needs authentication"),
        ({"host": "0.0.0.0", "auth_issuer": "i", "auth_audience": "a", "auth_jwks": "{jwks}"}, "need TLS"),
        ({"auth_jwks": "{jwks}"}, "needs --auth-issuer and --auth-audience"),
        ({"auth_mtls_scopes": "a=b"}, "needs --tls-client-ca"),
        ({"tls_cert": Path("x.pem")}, "give both"),
        ({"auth_jwks": "/nowhere/jwks.json", "auth_issuer": "i", "auth_audience": "a"}, "--auth-jwks"),
        ({"auth_jwks": "http://keys.test/jwks", "auth_issuer": "i", "auth_audience": "a"}, "use https://"),
    ],
)
def test_settings_that_would_expose_the_server_or_cannot_work_stop_it(
    settings: dict[str, Any], complaint: str, issuer: Issuer
) -> None:
    resolved = {k: str(issuer.jwks_path) if v == "{jwks}" else v for k, v in settings.items()}
    with pytest.raises(ConfigError, match=complaint):
        Security.from_config(ServerConfig(**resolved))


def test_insecure_serves_a_non_loopback_address_open_and_loopback_needs_nothing() -> None:
    assert not Security.from_config(ServerConfig(host="0.0.0.0", insecure=True)).authenticates
    assert not Security.from_config(ServerConfig(host="127.0.0.1")).authenticates
    assert not Security.from_config(ServerConfig(host="::1")).authenticates


async def test_a_served_method_without_a_scope_stops_the_start(serve: Serve, issuer: Issuer) -> None:
    scopes = dict(PROFILE.scopes)
    del scopes["DeleteProfile"]
    unscoped = dataclasses.replace(PROFILE, scopes=scopes)
    with pytest.raises(ConfigError, match=r"declares no scope for .*ProfileService/DeleteProfile"):
        async with serve(unscoped, **issuer.settings()):
            pass
    async with serve(unscoped):  # without authentication, scopes are not consulted
        pass


async def test_a_bearer_header_that_is_not_one_is_refused(serve: Serve, issuer: Issuer) -> None:
    request, token = pb.GetProfileRequest(user_id="u"), issuer.token("profile.read")
    async with (
        serve("profile", **issuer.settings()) as runtime,
        grpc.aio.insecure_channel(target_of(runtime)) as channel,
    ):
        stub = pb_grpc.ProfileServiceStub(channel)
        for header in (f"Basic {token}", "Bearer ", token):
            call = stub.GetProfile(request, metadata=(("authorization", header),))
            await fails(call, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
        call = stub.GetProfile(request, metadata=(("authorization", f"bearer {token}"),))
        await fails(call, grpc.StatusCode.NOT_FOUND, "PROFILE_NOT_FOUND")


async def test_a_scope_refusal_is_logged_with_who_was_refused_what_once_a_minute_per_method(
    serve: Serve, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    request = pb.CreateProfileRequest(profile=pb.Profile(user_id="u"))
    async with (
        serve("profile", **issuer.settings()) as runtime,
        grpc.aio.insecure_channel(target_of(runtime)) as channel,
    ):
        stub = pb_grpc.ProfileServiceStub(channel)
        for subject in ("reader-1", "reader-2", "reader-3"):
            token = issuer.token("profile.read", subject=subject)
            call = stub.CreateProfile(request, metadata=(("authorization", f"Bearer {token}"),))
            await fails(call, grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    (line,) = [record for record in caplog.records if record.getMessage() == "call refused: scope missing"]
    assert (line.principal, line.issuer, line.required_scope) == ("token:reader-1", ISSUER, "profile.write")
    assert "CreateProfile" in line.method and line.held_back == 0  # the next two wait for the next line


async def test_the_session_sdk_sends_its_token_on_calls_and_on_its_revocation_watch(
    serve: Serve, issuer: Issuer
) -> None:
    token = issuer.token("session.write", "session.validate")
    async with (
        serve("session", **issuer.settings()) as runtime,
        SessionClient(options=fast_options(target_of(runtime), token=token)) as sessions,
    ):
        issued = await sessions.create("ada", scopes=["infer"])
        assert (await sessions.validate(issued.token, ["infer"])).value.user_id == "ada"

        # Cached answers need the client's WatchRevocations stream up: it carries the token too.
        async def cached() -> bool:
            read = await sessions.validate(issued.token, ["infer"], accept_cached_for=30)
            return read.source is SessionSource.CACHE

        await until(cached, within=10.0, what="a validation answered from the cache")
        with pytest.raises(PermissionDenied):  # session.read is not among the token's scopes
            await sessions.get(issued.session.session_id)
