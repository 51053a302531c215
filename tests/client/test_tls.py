"""The SDK over TLS, against a real profile server listening with certificates from a throwaway CA (trustme):
the server is verified against the roots the client is given, and mutual TLS presents the client's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
import trustme

from microstate.client import TlsOptions
from microstate.client.errors import Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from microstate.server.profile import MICROSTATE
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores
from tests.client.conftest import fast_options

StartServer = Callable[[bool], Awaitable[str]]
"""Starts a TLS profile server (True: it requires a client certificate) and returns its target."""


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(store: Store, ca: trustme.CA) -> AsyncIterator[StartServer]:
    servers: list[grpc.aio.Server] = []

    async def start(require_client_certificate: bool) -> str:
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        credentials = grpc.ssl_server_credentials(
            [(certificate.private_key_pem.bytes(), certificate.cert_chain_pems[0].bytes())],
            root_certificates=ca.cert_pem.bytes(),
            require_client_auth=require_client_certificate,
        )
        server = grpc.aio.server()
        MICROSTATE.attach(server, Stores.of(store))
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


def client_certificate(ca: trustme.CA) -> TlsOptions:
    certificate = ca.issue_cert("worker@example.test")
    return TlsOptions(
        root_certificates=ca.cert_pem.bytes(),
        private_key=certificate.private_key_pem.bytes(),
        certificate_chain=certificate.cert_chain_pems[0].bytes(),
    )


async def test_the_async_and_sync_clients_verify_the_server_with_the_given_roots(
    tls_server: StartServer, ca: trustme.CA
) -> None:
    target = await tls_server(False)
    tls = TlsOptions(root_certificates=ca.cert_pem.bytes())
    async with ProfileClient(options=fast_options(target, tls=tls)) as profiles:
        created = await profiles.create(Profile(user_id="over-tls", display_name="Ada"))

    def read_with_the_sync_client() -> Profile:
        with SyncProfileClient(options=fast_options(target, tls=tls)) as profiles_sync:
            return profiles_sync.get("over-tls").value

    # In a thread: the server answers on this test's event loop.
    assert await asyncio.to_thread(read_with_the_sync_client) == created


async def test_a_server_the_roots_do_not_vouch_for_is_not_talked_to(
    tls_server: StartServer,
) -> None:
    target = await tls_server(False)
    stranger = TlsOptions(root_certificates=trustme.CA().cert_pem.bytes())
    async with ProfileClient(options=fast_options(target, tls=stranger, timeout=1.0)) as profiles:
        with pytest.raises(Unavailable):
            await profiles.create(Profile(user_id="never"))


async def test_mutual_tls_needs_the_clients_certificate(tls_server: StartServer, ca: trustme.CA) -> None:
    target = await tls_server(True)
    async with ProfileClient(options=fast_options(target, tls=client_certificate(ca))) as profiles:
        await profiles.create(Profile(user_id="mutual"))
    anonymous = TlsOptions(root_certificates=ca.cert_pem.bytes())
    async with ProfileClient(options=fast_options(target, tls=anonymous, timeout=1.0)) as profiles:
        with pytest.raises(Unavailable):
            await profiles.create(Profile(user_id="anonymous"))
