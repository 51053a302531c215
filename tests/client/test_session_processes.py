"""The session client against a real `microstate serve session` process that is killed (SIGKILL):
validation fails closed with a typed error, at once, and only a call that opted in is answered from the
cache."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from microstate.client.errors import Unavailable
from microstate.client.session.v1 import SessionClient, Source
from microstate.server.session import KEY_FILE_ENV
from tests.client.conftest import fast_options
from tests.client.session_harness import cached
from tests.support.processes import running_server

pytestmark = pytest.mark.process


async def test_validation_fails_closed_when_the_server_process_is_killed(tmp_path: Path) -> None:
    key = tmp_path / "session.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    store = f"sqlite:///{tmp_path / 'session.db'}"
    env = {KEY_FILE_ENV: str(key)}
    with running_server("session", tmp_path, "--store", store, "--drain-seconds", "0", env=env) as server:
        async with SessionClient(options=fast_options(server.target)) as client:
            issued = await client.create("ada", scopes=["read"])
            assert (await client.validate(issued.token, ["read"])).source is Source.LIVE
            await cached(client, issued.token)
            server.process.kill()
            server.process.wait()

            started = time.monotonic()
            with pytest.raises(Unavailable) as caught:
                await client.validate(issued.token, ["read"])
            assert time.monotonic() - started < client.options.timeout  # refused at once, not at the deadline
            assert caught.value.code.name == "UNAVAILABLE"
            with pytest.raises(Unavailable):
                await client.get(issued.session.session_id)

            read = await client.validate(issued.token, ["read"], accept_cached_for=30)
            assert read.source is Source.CACHE and read.fallback_reason is None
            assert read.value.session_id == issued.session.session_id and 0 <= read.age < 30
