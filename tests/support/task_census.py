"""A test-only count of a server's asyncio tasks, for tests that check that the server leaks none.

A server started with the `--task-census` hook (tests/support/hooked_server.py) answers SIGUSR1 by writing
CENSUS_FILE in its working directory: how many of its tasks run each coroutine. `take_census` asks for one.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
from pathlib import Path
from types import FrameType

from tests.support.processes import MicrostateProcess, wait_for

HOOK = "--task-census"
CENSUS_FILE = "asyncio-tasks.json"


def _name(task: asyncio.Task[object]) -> str:
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", type(coroutine).__name__)  # anext() is an async_generator_asend


def _write_census() -> None:
    coroutines = collections.Counter(_name(task) for task in asyncio.all_tasks())
    partial = Path(CENSUS_FILE + ".partial")
    partial.write_text(json.dumps(coroutines))
    partial.replace(CENSUS_FILE)  # the reader never sees half a file


def _on_request(_signum: int, _frame: FrameType | None) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # before the loop started or after it ended: no census
        return
    loop.call_soon_threadsafe(_write_census)


def answer_requests() -> None:
    """In the server process, before its event loop starts: answer SIGUSR1 with a census."""
    signal.signal(signal.SIGUSR1, _on_request)


def take_census(
    server: MicrostateProcess, workdir: Path, *, within: float = 20.0
) -> collections.Counter[str]:
    """The asyncio tasks of `server` (started with HOOK, in `workdir`) right now, counted by coroutine."""
    census = workdir / CENSUS_FILE
    census.unlink(missing_ok=True)
    server.send(signal.SIGUSR1)
    wait_for(census.exists, within=within, what="the server's task census")
    return collections.Counter(json.loads(census.read_text()))
