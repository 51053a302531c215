"""kill -9 a real profile server while a client reads: snapshots answer, then reads go live again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from microstate.client import BreakerOptions, ClientOptions, RetryPolicy
from microstate.client.errors import NoSnapshotError
from microstate.client.profile.v1 import Profile, ProfileClient, Read, Source
from tests.support.processes import ServerProcess, start_server, until
from tests.support.redis_server import running_redis_server

pytestmark = pytest.mark.process


def options(target: str) -> ClientOptions:
    return ClientOptions(
        target=target,
        timeout=1.0,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1),
        breaker=BreakerOptions(failure_threshold=3, reset_timeout=0.2),
        max_reconnect_backoff=0.2,
    )


def serve(workdir: Path, *flags: str, store: str | None = None) -> ServerProcess:
    return start_server("profile", workdir, "--store", store or f"sqlite:///{workdir / 'profile.db'}", *flags)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the server process keeps its profiles: the embedded default, and a private redis-server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'profile.db'}"
        return
    with running_redis_server() as redis:
        yield redis.url


async def test_a_crashed_server_is_answered_from_snapshots_and_reads_go_live_after_restart(
    tmp_path: Path, store_url: str
) -> None:
    server = serve(tmp_path, store=store_url)
    port = server.target.rsplit(":", 1)[1]
    reads: list[Read[Profile]] = []
    try:
        async with ProfileClient(options=options(server.target)) as profiles:
            created = await profiles.create(Profile(user_id="known", display_name="Ada", embedding=[0.5]))
            assert (await profiles.get("known")).source is Source.LIVE

            async def keep_reading() -> None:
                while True:
                    reads.append(await profiles.get("known"))
                    await asyncio.sleep(0)  # let the test's checks run between reads

            reader = asyncio.create_task(keep_reading())
            await until(lambda: len(reads) >= 5, within=10, what="live reads before the crash")
            server.send(signal.SIGKILL)
            server.wait()
            await until(lambda: reads[-1].source is Source.SNAPSHOT, within=10, what="a snapshot read")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

            stale = await profiles.get("known")
            assert stale.stale and stale.source is Source.SNAPSHOT
            assert stale.value == created and stale.etag == created.etag
            assert stale.fallback_reason is not None
            with pytest.raises(NoSnapshotError):
                await profiles.get("never-read")

            # The same port: the same client reconnects by itself.
            server = serve(tmp_path, "--port", port, store=store_url)

            async def live_again() -> bool:
                return (await profiles.get("known")).source is Source.LIVE

            await until(live_again, within=15, what="live reads after the restart")
            again = await profiles.get("known")
            assert again.value == created  # the acknowledged write survived kill -9
    finally:
        server.stop()


def test_server_processes_run_on_uvloop_when_it_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    server = serve(tmp_path)
    try:
        loops = [r["event_loop"] for r in server.log_records() if r.get("phase") == "serving"]
        assert loops and loops[0].startswith("uvloop")
    finally:
        server.stop()
