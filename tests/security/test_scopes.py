"""Every method of every registered microstate, under authentication, against every kind of bad credential.

Generated from the registry, the service descriptors and each slice's scope table: a slice added later is
covered by these tests as soon as it is registered. The calls are raw (empty request messages, whatever the
method): the guard answers before any request is looked at, and a call it lets through fails, if at all, for
its own reasons (an empty request is rarely valid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2

from microstate.server import registry
from microstate.server.security import missing_scopes
from tests.security.conftest import Serve
from tests.support.issuer import Issuer
from tests.support.rpc_errors import details

GUARD_REASONS = {"CREDENTIALS_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "SCOPE_MISSING"}
UNAUTHENTICATED, PERMISSION_DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
REFUSED_WITHIN = 10.0
"""Deadline of a call the guard must refuse: generous, the refusal comes before any store access."""
PASSED_WITHIN = 1.0
"""Deadline of a call it lets through: a watch then waits for changes until its deadline."""

Token = Callable[[Issuer, str], str | None]
"""The credential of one case, for a method needing a scope: a token (or None: no credentials)."""
CASES: dict[str, tuple[Token, grpc.StatusCode, str]] = {
    "no credentials": (lambda issuer, scope: None, UNAUTHENTICATED, "CREDENTIALS_MISSING"),
    "wrong scope": (lambda issuer, scope: issuer.token(f"not-{scope}"), PERMISSION_DENIED, "SCOPE_MISSING"),
    "expired": (
        lambda issuer, scope: issuer.token(scope, expires_in=-3600),
        UNAUTHENTICATED,
        "TOKEN_EXPIRED",
    ),
    "wrong issuer": (
        lambda issuer, scope: issuer.token(scope, issuer="https://other.test"),
        UNAUTHENTICATED,
        "TOKEN_INVALID",
    ),
    "wrong audience": (
        lambda issuer, scope: issuer.token(scope, audience="someone-else"),
        UNAUTHENTICATED,
        "TOKEN_INVALID",
    ),
    "bad signature": (
        lambda issuer, scope: issuer.token(scope, forged=True),
        UNAUTHENTICATED,
        "TOKEN_INVALID",
    ),
    "not a JWT": (lambda issuer, scope: "not.a.jwt", UNAUTHENTICATED, "TOKEN_INVALID"),
}


def methods(name: str) -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    microstate = registry.get(name)
    return [
        method for service in microstate.service_names for method in pool.FindServiceByName(service).methods
    ]


async def call(
    channel: grpc.aio.Channel, method: MethodDescriptor, token: str | None, deadline: float
) -> grpc.aio.AioRpcError | None:
    """Call `method` with an empty request; its error, or None if it succeeded."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    request: Any = iter([b""]) if method.client_streaming else b""
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[method.client_streaming, method.server_streaming]
    rpc = kind(path)  # no serializers: raw bytes in and out
    try:
        if method.server_streaming:
            async for _ in rpc(request, metadata=metadata, timeout=deadline):
                break
        else:
            await rpc(request, metadata=metadata, timeout=deadline)
    except grpc.aio.AioRpcError as error:
        return error
    return None


def reason_of(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    info = details(error).get("ErrorInfo")
    assert isinstance(info, error_details_pb2.ErrorInfo), f"{error.code()} without ErrorInfo"
    return info.reason, dict(info.metadata)


@pytest.mark.parametrize("name", registry.names())
def test_every_served_method_declares_a_scope(name: str) -> None:
    microstate = registry.get(name)
    assert missing_scopes(microstate.service_names, microstate.scopes) == []


@pytest.mark.parametrize("name", registry.names())
async def test_every_method_refuses_bad_credentials_and_admits_its_scope(
    name: str, serve: Serve, issuer: Issuer
) -> None:
    scopes = registry.get(name).scopes
    wrong: list[str] = []
    async with serve(name, **issuer.settings()) as runtime:
        assert runtime.endpoint is not None
        async with grpc.aio.insecure_channel(runtime.endpoint.target) as channel:
            for method in methods(name):
                scope = scopes[method.name]
                for case, (token_for, code, reason) in CASES.items():
                    error = await call(channel, method, token_for(issuer, scope), REFUSED_WITHIN)
                    got = (error.code(), *reason_of(error)) if error is not None else ("OK",)
                    expected_metadata = {"method": method.name, "required_scope": scope}
                    if got[:2] != (code, reason) or (
                        reason == "SCOPE_MISSING" and got[2] != expected_metadata
                    ):
                        wrong.append(f"{method.full_name} {case}: {got}, expected {code.name} {reason}")
                # The right scope passes the guard (what the method then answers is its own business).
                error = await call(channel, method, issuer.token(scope), PASSED_WITHIN)
                refused = error is not None and error.code() in (UNAUTHENTICATED, PERMISSION_DENIED)
                if refused and error is not None and reason_of(error)[0] in GUARD_REASONS:
                    wrong.append(f"{method.full_name} with {scope}: refused {reason_of(error)}")
    assert not wrong, "\n".join(wrong)
