"""Conformance: a dead backend fails fast, followers ride out a restart, appends outlive their process."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import aclosing

import pytest

from microstate.server.store.log import Appended, LogStore, StoreUnavailable, open_log
from tests.conformance.conftest import Backend
from tests.conformance.test_availability import FAIL_FAST
from tests.conformance.waiting import DEADLINE, take, wait_until
from tests.conformance_log.conftest import LogFactory
from tests.conformance_log.support import parked, read_all
from tests.support.processes import server_env


async def test_an_unreachable_backend_fails_fast_with_store_unavailable(
    backend: Backend, namespace: str
) -> None:
    async with asyncio.timeout(FAIL_FAST):
        with pytest.raises(StoreUnavailable):
            # Backends may connect lazily, so the failure may come from open or from the first call.
            log = await open_log(backend.dead_url, namespace)
            try:
                await log.ping()
                await log.append([b"v"])
            finally:
                await log.close()


async def test_a_follower_resumes_without_gap_or_duplicate_across_a_backend_restart(
    backend: Backend, log: LogStore
) -> None:
    if backend.restart is None:
        pytest.skip(f"{backend.name} is embedded: there is no server to restart (see the reopen test)")
    before = await log.append([b"before"])

    async with aclosing(log.follow("0")) as entries:
        assert [e.data for e in await take(entries, 1)] == [b"before"]
        pending = await parked(entries)  # waiting on the server when it goes away

        await asyncio.to_thread(backend.restart)
        # Resent until it lands: an append whose reply was lost may have committed, and the key says so.
        during: list[Appended] = []

        async def appended() -> bool:
            try:
                during.append(await log.append([b"after the restart"], dedupe_key="after-restart"))
            except StoreUnavailable:
                return False
            return True

        await wait_until(appended, what="the log accepts appends again after the restart")
        seen = [await asyncio.wait_for(pending, DEADLINE * 2)]  # the follower's backoff may run a while
        sentinel = await log.append([b"sentinel"])
        seen += await take(entries, 1)

    assert during[0].positions == range(before.positions[-1] + 1, before.positions[-1] + 2)
    assert [(e.position, e.data) for e in seen] == [
        (during[0].positions[0], b"after the restart"),
        (sentinel.positions[0], b"sentinel"),
    ]


# Runs in a child process: open the log, append two batches, report their positions, then die by SIGKILL
# without closing anything, the way a crashed server process would.
_KILLED_APPENDER = """
import asyncio, os, signal, sys
from microstate.server.store.log import open_log

async def main() -> None:
    log = await open_log(sys.argv[1], sys.argv[2])
    first = await log.append([b"a", b"b"], dedupe_key="child:1")
    second = await log.append([b"c"], dedupe_key="child:2")
    print(first.positions[0], second.positions[-1], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_appends_of_another_process_are_followed_and_outlive_it(
    backend: Backend, namespace: str, log: LogStore, log_factory: LogFactory
) -> None:
    mine = await log.append([b"parent"])
    async with aclosing(log.follow(mine.cursor)) as entries:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_APPENDER, backend.url, namespace,
            stdout=asyncio.subprocess.PIPE, env=server_env(),
        )  # fmt: skip
        async with asyncio.timeout(DEADLINE * 2):  # includes the child's interpreter start-up
            output, _ = await child.communicate()
            followed = await take(entries, 3)
    assert child.returncode == -signal.SIGKILL
    first, last = map(int, output.split())

    reopened = await log_factory()

    assert [(e.position, e.data) for e in followed] == [(2, b"a"), (3, b"b"), (4, b"c")]
    assert (first, last) == (2, 4)
    assert await read_all(reopened, mine.cursor) == followed
    assert (await reopened.append([b"c"], dedupe_key="child:2")).duplicate
