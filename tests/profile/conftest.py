"""A real profile server (every contract version) over a real SQLite store, in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from microstate.server.profile import MICROSTATE
from microstate.server.store import open_store
from microstate.server.store.base import Store
from tests.support.inproc import serve_in_process


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'profile.db'}", "profile")
    yield opened
    await opened.close()


@pytest.fixture
async def channel(store: Store) -> AsyncIterator[grpc.aio.Channel]:
    async with serve_in_process(MICROSTATE, store) as target, grpc.aio.insecure_channel(target) as opened:
        yield opened
