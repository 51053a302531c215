"""Conformance: unreachable backends fail fast, restarts are survived, data outlives the writer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from microstate.server.store import Store, StoreUnavailable, open_store
from tests.conformance.conftest import Backend, StoreFactory
from tests.conformance.waiting import DEADLINE, take, wait_until, watching
from tests.support.processes import run_python

FAIL_FAST = 3.0
"""Seconds within which an unusable backend must be reported (not hung on)."""
REPO = Path(__file__).resolve().parents[2]


async def test_an_unreachable_backend_fails_fast_with_store_unavailable(
    backend: Backend, namespace: str
) -> None:
    async with asyncio.timeout(FAIL_FAST):
        with pytest.raises(StoreUnavailable):
            # Backends may connect lazily, so the failure may come from open or from the first call.
            store = await open_store(backend.dead_url, namespace)
            try:
                await store.ping()
                await store.get("k")
            finally:
                await store.close()


async def test_the_same_store_object_works_again_after_a_backend_restart(
    backend: Backend, store: Store
) -> None:
    if backend.restart is None:
        pytest.skip(f"{backend.name} is embedded: there is no server to restart (see the reopen test)")
    before = await store.put("k", b"before")

    await asyncio.to_thread(backend.restart)

    async def answers() -> bool:
        try:
            await store.ping()
        except StoreUnavailable:
            return False
        return True

    await wait_until(answers, what="the store reconnects after the restart")
    if store.capabilities.durable:
        assert await store.get("k") == before
    after = await store.put("k", b"after")
    assert after.revision > before.revision
    assert await store.get("k") == after


async def test_data_and_revisions_survive_closing_and_reopening(
    store: Store, store_factory: StoreFactory
) -> None:
    written = await store.put("k", b"v")
    cursor = await store.head_cursor()
    await store.close()

    reopened = await store_factory()

    assert await reopened.get("k") == written
    assert await reopened.head_cursor() == cursor
    assert (await reopened.put("k", b"w")).revision > written.revision


# Runs in a child process: open the store, write, report the acknowledged revision, then die by SIGKILL
# without closing anything, the way a crashed server process would.
_KILLED_WRITER = """
import asyncio, os, signal, sys
from microstate.server.store import open_store

async def main() -> None:
    store = await open_store(sys.argv[1], sys.argv[2])
    record = await store.put("acknowledged", b"v")
    print(record.revision, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def _child_env() -> dict[str, str]:
    paths = [str(REPO / part) for part in ("generated", "clients", "servers", ".")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


async def test_an_acknowledged_write_survives_the_writer_process_being_killed(
    backend: Backend, namespace: str, store_factory: StoreFactory
) -> None:
    status, output, errors = await run_python(_KILLED_WRITER, backend.url, namespace, within=DEADLINE * 2)
    assert status == -signal.SIGKILL, errors
    revision = int(output)

    store = await store_factory()

    record = await store.get("acknowledged")
    assert record is not None
    assert record.revision == revision


# Runs in a child process: open the store and write one record per line read from stdin.
_LINE_WRITER = """
import asyncio, sys
from microstate.server.store import open_store

async def main() -> None:
    store = await open_store(sys.argv[1], sys.argv[2])
    try:
        for line in sys.stdin:
            await store.put(line.strip(), b"from another process")
            print("ok", flush=True)
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_a_watch_sees_writes_of_another_process(backend: Backend, namespace: str, store: Store) -> None:
    if not store.capabilities.shared:
        pytest.skip(f"{backend.name} is not shared between processes")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LINE_WRITER, backend.url, namespace,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_child_env(),
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        async with watching(store, after=await store.head_cursor()) as changes:
            for key in ("p1", "p2"):
                child.stdin.write(f"{key}\n".encode())
            await child.stdin.drain()
            seen = await take(changes, 2, within=DEADLINE * 2)  # includes the child's interpreter start-up
    finally:
        child.stdin.close()
        async with asyncio.timeout(DEADLINE):
            await child.wait()

    assert [c.key for c in seen] == ["p1", "p2"]
    assert child.returncode == 0
