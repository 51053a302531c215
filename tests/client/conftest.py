"""Fixtures for the client SDK tests: real grpc.aio servers on free ports (the real profile server over
SQLite, or a scripted servicer where a failure must be staged), and fast client options."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from microstate.client import BreakerOptions, ClientOptions, RetryPolicy, SnapshotOptions
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.kit import wire
from microstate.server.pinning import refuse_unserved_contracts
from microstate.server.profile import MICROSTATE, v1
from microstate.server.profile.domain import ProfileDomain
from microstate.server.profile.servicer import ProfileServicer
from microstate.server.store import open_store
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores
from tests.client.harness import RestartableServer
from tests.client.scripted import ScriptedProfiles


def fast_options(target: str, **changes: object) -> ClientOptions:
    """Options with short backoffs, so failure paths take milliseconds."""
    options = ClientOptions(
        target=target,
        timeout=5.0,
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02),
        breaker=BreakerOptions(failure_threshold=100, reset_timeout=0.2),
        snapshot=SnapshotOptions(flush_interval=0.05),
        max_reconnect_backoff=0.1,
    )
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]


def breaker_options(target: str, *, reset_timeout: float, **changes: object) -> ClientOptions:
    """`fast_options` whose breaker opens after two failed reads, each a single attempt."""
    breaker = BreakerOptions(failure_threshold=2, reset_timeout=reset_timeout)
    return fast_options(target, retry=RetryPolicy(max_attempts=1), breaker=breaker, **changes)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedProfiles, RestartableServer]]:
    servicer = ScriptedProfiles()
    server = RestartableServer(lambda s: profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, s))
    await server.start()
    yield servicer, server
    await server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store("sqlite:///" + str(tmp_path / "profiles.db"), "profile")
    yield store
    await store.close()


def profile_server(
    store: Store, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> RestartableServer:
    """The real profile server (v1 and v2 servicers, domain, contract pinning) over `store`, restartable on
    its port, behind `interceptors`."""

    def attach(server: grpc.aio.Server) -> None:
        MICROSTATE.attach(server, Stores.of(store))
        refuse_unserved_contracts(server, MICROSTATE.service_names)

    return RestartableServer(attach, interceptors)


@pytest.fixture
async def real_server(store: Store) -> AsyncIterator[RestartableServer]:
    """The real profile server over SQLite."""
    server = profile_server(store)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def v1_only_server(store: Store) -> AsyncIterator[RestartableServer]:
    """A real profile server from before v2: it serves (and pins) microstate.profile.v1 only."""

    def attach(server: grpc.aio.Server) -> None:
        wire.add_service(server, v1.CODEC.service, ProfileServicer(ProfileDomain(store), v1.CODEC))
        refuse_unserved_contracts(server, [v1.CODEC.service_name])

    server = RestartableServer(attach)
    await server.start()
    yield server
    await server.stop()
