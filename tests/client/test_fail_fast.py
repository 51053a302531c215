"""A call on a channel without a connection fails at once with UNAVAILABLE, and a read then serves its
snapshot, instead of gRPC retrying a refused connection into the deadline (see _connection.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from microstate.client import BreakerOptions, ClientOptions, RetryPolicy, Source
from microstate.client.errors import DeadlineExceeded, NoSnapshotError, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from tests.client.harness import RestartableServer
from tests.support.server_process import free_port

SLOW_RETRIES = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=2.0)
"""Retries that would spend 5 s or more (gRPC jitters each backoff by at most 20%) between attempts."""
FAST = 2.0
"""Seconds well under what the retries take, and well over a refused connection on a loaded machine."""


def dead_target() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def silent_target() -> Iterator[str]:
    """A port whose listener never answers: TCP connects, the HTTP/2 handshake never completes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


async def test_reads_of_a_refused_connection_fail_at_once_with_unavailable() -> None:
    options = ClientOptions(target=dead_target(), timeout=30.0, retry=SLOW_RETRIES)
    async with ProfileClient(options=options) as client:
        for _ in range(2):  # the attempt to connect, then a channel known not to be connected
            started = time.monotonic()
            with pytest.raises(NoSnapshotError) as caught:
                await client.get("u1")
            assert time.monotonic() - started < FAST
            assert isinstance(caught.value.fallback_reason, Unavailable)


async def test_a_short_deadline_reports_unavailable_not_deadline_exceeded() -> None:
    # The README's deadlines: gRPC's default retries alone (~0.7 s) used to outlast them.
    async with ProfileClient(options=ClientOptions(target=dead_target(), timeout=0.5)) as client:
        with pytest.raises(NoSnapshotError) as caught:
            await client.get("u1", timeout=0.2)
        assert isinstance(caught.value.fallback_reason, Unavailable)
        with pytest.raises(Unavailable):
            await client.check_contract()


async def test_check_contract_of_a_dead_server_raises_unavailable_at_once() -> None:
    options = ClientOptions(target=dead_target(), timeout=30.0, retry=SLOW_RETRIES)
    async with ProfileClient(options=options) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await client.check_contract()
        assert time.monotonic() - started < FAST


async def test_a_server_gone_serves_snapshots_at_once_and_live_reads_resume(
    real_server: RestartableServer,
) -> None:
    options = ClientOptions(
        target=real_server.target,
        timeout=30.0,
        retry=SLOW_RETRIES,
        breaker=BreakerOptions(failure_threshold=None),  # every read goes to the channel
        max_reconnect_backoff=0.2,
    )
    async with ProfileClient(options=options) as client:
        await client.create(Profile(user_id="u1", display_name="One"))
        await client.get("u1")
        await real_server.stop()
        # A read racing the closing connection may meet its GOAWAY and wait out one retry; once the
        # channel knows the server is gone, every read is answered at once.
        await client.get("u1")

        started = time.monotonic()
        read = await client.get("u1")
        assert time.monotonic() - started < FAST
        assert read.source is Source.SNAPSHOT and isinstance(read.fallback_reason, Unavailable)

        await real_server.start()  # the channel reconnects by itself; reads go live again
        deadline = time.monotonic() + 10
        while (read := await client.get("u1")).source is not Source.LIVE:
            assert time.monotonic() < deadline, "reads did not go live again"
            await asyncio.sleep(0.02)  # between polls of a condition
        assert read.value.display_name == "One"


async def test_the_sync_twin_fails_at_once_too() -> None:
    client = SyncProfileClient(options=ClientOptions(target=dead_target(), timeout=30.0, retry=SLOW_RETRIES))

    def reads() -> list[float]:
        took = []
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(NoSnapshotError) as caught:
                client.get("u1")
            took.append(time.monotonic() - started)
            assert isinstance(caught.value.fallback_reason, Unavailable)
        with pytest.raises(Unavailable):
            client.check_contract()
        return took

    try:
        assert max(await asyncio.to_thread(reads)) < FAST
    finally:
        client.close()


@pytest.mark.parametrize("twin", ["async", "sync"])
async def test_a_connection_that_hangs_takes_the_deadline_once(silent_target: str, twin: str) -> None:
    options = ClientOptions(target=silent_target, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(NoSnapshotError) as caught:
        if twin == "async":
            async with ProfileClient(options=options) as client:
                await client.get("u1")
        else:
            sync = SyncProfileClient(options=options)
            try:
                await asyncio.to_thread(sync.get, "u1")
            finally:
                sync.close()
    assert isinstance(caught.value.fallback_reason, DeadlineExceeded)
    assert time.monotonic() - started < FAST  # the wait to connect is part of the deadline, not added
