"""A real session server for the session SDK tests: in this process over SQLite, restartable on its port
(`session_server`), and the waits those tests share."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from microstate.client.session.v1 import Read, Session, SessionClient, Source
from microstate.server.session import attach_with
from microstate.server.session.tokens import ServerKey
from microstate.server.store import open_store
from microstate.server.store.roles import Stores
from tests.client.harness import RestartableServer

LONG = 600.0
"""Seconds of life for sessions whose expiry is not the point."""
WITHIN = 5.0
"""Seconds any waited-for condition gets on a loaded machine."""


@pytest.fixture
async def session_server(tmp_path: Path) -> AsyncIterator[RestartableServer]:
    """The real session server (servicer, domain, SQLite store) under a fresh key, restartable on its port."""
    store = await open_store("sqlite:///" + str(tmp_path / "sessions.db"), "session")
    attach = attach_with(ServerKey(secrets.token_bytes(32)))

    def add(server: grpc.aio.Server) -> None:
        attach(server, Stores.of(store))

    server = RestartableServer(add)
    await server.start()
    yield server
    await server.stop()
    await store.close()


async def cached(client: SessionClient, token: str, accept_for: float = 30.0) -> Read[Session]:
    """Validate `token` until the answer comes from the cache: the first answers are live, since the cache
    keeps answers only once its revocation watch is connected."""
    deadline = time.monotonic() + WITHIN
    while (read := await client.validate(token, accept_cached_for=accept_for)).source is not Source.CACHE:
        assert time.monotonic() < deadline, "validations were never cached"
        await asyncio.sleep(0.01)
    return read
