"""Where token keys come from: a JWKS file (read again when it changes) or a URL (fetched over HTTP by a real
local server here, refetched for a rotated-in key id but not for every made-up one)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc as pb_grpc
from microstate.server.kit.access import Unauthenticated
from microstate.server.runtime import Runtime
from microstate.server.security import tokens
from tests.security.conftest import Serve
from tests.support.issuer import AUDIENCE, ISSUER, Issuer
from tests.support.processes import until
from tests.support.rpc_errors import fails


class JwksServer:
    """A real HTTP server answering every GET with `keys` as a JWKS, counting the requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


def settings(jwks: str) -> dict[str, str]:
    return {"auth_jwks": jwks, "auth_issuer": ISSUER, "auth_audience": AUDIENCE}


def get(runtime: Runtime, token: str) -> Any:
    assert runtime.endpoint is not None
    channel = grpc.aio.insecure_channel(runtime.endpoint.target)
    call = pb_grpc.ProfileServiceStub(channel).GetProfile(
        pb.GetProfileRequest(user_id="u"), metadata=(("authorization", f"Bearer {token}"),)
    )
    return call, channel


async def outcome(runtime: Runtime, token: str) -> str:
    """NOT_FOUND (the guard let it through) or the refusal's code name."""
    call, channel = get(runtime, token)
    async with channel:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            return error.code().name
    return "OK"


async def test_keys_from_a_url_and_a_key_rotated_in(
    serve: Serve, jwks_server: JwksServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = Issuer(tmp_path, kid="first"), Issuer(tmp_path, kid="second")
    jwks_server.keys = [first.jwk()]
    async with serve("profile", **settings(jwks_server.url)) as runtime:
        assert await outcome(runtime, first.token("profile.read")) == "NOT_FOUND"
        assert await outcome(runtime, first.token("profile.read", forged=True)) == "UNAUTHENTICATED"
        fetched = jwks_server.requests
        # Made-up key ids within the cooldown are refused without a fetch each.
        for _ in range(5):
            assert await outcome(runtime, second.token("profile.read")) == "UNAUTHENTICATED"
        assert jwks_server.requests == fetched
        # The issuer rotates a key in; once the cooldown allows, its tokens verify.
        jwks_server.keys = [first.jwk(), second.jwk()]
        monkeypatch.setattr(tokens, "UNKNOWN_KID_COOLDOWN_SECONDS", 0.0)
        assert await outcome(runtime, second.token("profile.read")) == "NOT_FOUND"
        assert jwks_server.requests == fetched + 1


async def test_a_url_out_of_reach_is_unavailable_not_a_bad_token(
    serve: Serve, jwks_server: JwksServer, issuer: Issuer
) -> None:
    url = jwks_server.url
    jwks_server.http.shutdown()
    jwks_server.http.server_close()  # nothing listens there now
    async with serve("profile", **settings(url)) as runtime:
        call, channel = get(runtime, issuer.token("profile.read"))
        async with channel:
            await fails(call, grpc.StatusCode.UNAVAILABLE, "KEYS_UNAVAILABLE")


async def test_a_key_taken_out_of_the_file_stops_verifying(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked often, but not at every call: a token verified once is remembered until the file changes.
    monkeypatch.setattr(tokens, "FILE_CHECK_SECONDS", 0.05)
    kept, retired = Issuer(tmp_path, kid="kept"), Issuer(tmp_path, kid="retired")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [kept.jwk(), retired.jwk()]}))
    async with serve("profile", **settings(str(jwks))) as runtime:
        assert await outcome(runtime, retired.token("profile.read")) == "NOT_FOUND"
        replacement = tmp_path / "jwks.next"
        replacement.write_text(json.dumps({"keys": [kept.jwk()]}))
        replacement.replace(jwks)

        async def refused() -> bool:
            return await outcome(runtime, retired.token("profile.read")) == "UNAUTHENTICATED"

        await until(refused, within=10.0, what="the retired key to stop verifying")
        assert await outcome(runtime, kept.token("profile.read")) == "NOT_FOUND"


async def test_a_remembered_token_still_expires(issuer: Issuer) -> None:
    verifier = tokens.TokenVerifier(
        tokens.JwksFile(issuer.jwks_path), issuer=ISSUER, audience=AUDIENCE, leeway=0.0
    )
    token = issuer.token("profile.read", expires_in=2)
    assert (await verifier.verify(token)).scopes == {"profile.read"}
    assert await verifier.verify(token) is await verifier.verify(token)  # remembered, not verified again

    async def expired() -> bool:
        try:
            await verifier.verify(token)
        except Unauthenticated as refused:
            return refused.reason == "TOKEN_EXPIRED"
        return False

    await until(expired, within=10.0, what="the remembered token to expire")
