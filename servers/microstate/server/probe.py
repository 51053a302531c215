"""Ask a running server how it is: the gRPC health status of each service, and which services it has.

Used by `microstate health`, by `microstate up` to wait for its children, and by tests. Failures are
answers here, not exceptions: an unreachable server is reported as UNREACHABLE (a TLS server asked in
plaintext, or one the given roots do not vouch for, is unreachable too). Health needs no credentials; a server
that requires client certificates needs one for the handshake, though.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

UNREACHABLE = "UNREACHABLE"
"""No answer within the timeout (or the connection was refused)."""
UNKNOWN_SERVICE = "SERVICE_UNKNOWN"
"""The server answers but has no health status for that service name."""
RPC_FAILED = "RPC_FAILED"
"""The server is connected but the health call failed (it does not serve health, or timed out answering)."""


def status_name(status: int) -> str:
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return name


@dataclass(frozen=True, slots=True)
class ProbeTls:
    """TLS for a probe: PEM files of the roots that vouch for the server and, for mutual TLS, the client's
    own certificate and key; `server_name` when the address is not a name in the server's certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None


TOKEN_VARIABLE = "MICROSTATE_TOKEN"


def add_credential_arguments(parser: argparse.ArgumentParser, scopes: str, servers: str = "server") -> None:
    """--token-file and --tls-ca, for a command calling secured servers (`scopes`: what the token needs)."""
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"a bearer token with {scopes} [env {TOKEN_VARIABLE}]",
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help=f"roots that vouch for the {servers}: speak TLS"
    )


def bearer_token(args: argparse.Namespace) -> str | None:
    """The token --token-file names, else the environment's; None when neither gives one."""
    token = args.token_file.read_text().strip() if args.token_file else os.environ.get(TOKEN_VARIABLE)
    return token or None


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def open_channel(target: str, tls: ProbeTls | None = None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(_read(tls.ca), _read(tls.key), _read(tls.cert))
    options = [] if tls.server_name is None else [("grpc.ssl_target_name_override", tls.server_name)]
    return grpc.aio.secure_channel(target, credentials, options=options)


async def check(channel: grpc.aio.Channel, service: str = "", *, rpc_timeout: float = 2.0) -> str:
    """The health status name of `service` ("" = the whole server): SERVING, NOT_SERVING, or one of ours."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=rpc_timeout)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return UNKNOWN_SERVICE
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return UNREACHABLE
        return RPC_FAILED
    return status_name(response.status)


async def list_services(channel: grpc.aio.Channel, *, rpc_timeout: float = 2.0) -> list[str]:
    """The service names the server lists over reflection; [] if it cannot tell."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        async for response in stub.ServerReflectionInfo(iter([request]), timeout=rpc_timeout):
            return [service.name for service in response.list_services_response.service]
    except grpc.aio.AioRpcError:
        pass
    return []


async def check_all(
    target: str, services: list[str] | None = None, *, rpc_timeout: float = 2.0, tls: ProbeTls | None = None
) -> dict[str, str]:
    """Health of "" and each service (default: every service reflection lists, health/reflection aside).

    The connection is made first, within `rpc_timeout`: a server that cannot be reached (refused, or a
    listener that never completes the HTTP/2 handshake) is UNREACHABLE, as grpc_health_probe's dial is."""
    async with open_channel(target, tls) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), rpc_timeout)
        except TimeoutError:
            return {name: UNREACHABLE for name in ["", *(services or [])]}
        if services is None:
            listed = await list_services(channel, rpc_timeout=rpc_timeout)
            services = [name for name in listed if not name.startswith("grpc.")]
        names = ["", *(name for name in services if name)]
        statuses = await asyncio.gather(*(check(channel, name, rpc_timeout=rpc_timeout) for name in names))
    return dict(zip(names, statuses, strict=True))


async def wait_until(target: str, wanted: str = "SERVING", *, deadline: float, service: str = "") -> str:
    """Poll until `service` reports `wanted` or the monotonic `deadline` passes; returns the last status."""
    status = UNREACHABLE
    async with grpc.aio.insecure_channel(target) as channel:
        while True:
            remaining = deadline - time.monotonic()
            status = await check(channel, service, rpc_timeout=max(0.1, min(1.0, remaining)))
            if status == wanted or time.monotonic() >= deadline:
                return status
            await asyncio.sleep(0.05)  # poll interval, not synchronisation: the loop ends on the condition
