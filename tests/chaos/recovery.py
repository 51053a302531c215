"""What the chaos scenarios measured in this run, for the summary conftest.py prints and writes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from microstate.client.errors import MicrostateError
from tests.support.processes import until

T = TypeVar("T")

REPORT_DIR = Path(".")
"""Where the report goes unless MICROSTATE_CHAOS_REPORT names a file: pytest's base temp directory."""

MEASURED: list[tuple[str, float]] = []
"""(measure, seconds) for each recovery timed in this run."""
COUNTED: dict[str, list[int]] = {}
"""measure -> one count per run (e.g. writes whose answer a kill lost)."""


def record(measure: str, seconds: float) -> None:
    MEASURED.append((measure, seconds))


def count(measure: str, value: int) -> None:
    COUNTED.setdefault(measure, []).append(value)


async def seconds_until(condition: Callable[[], Any], *, since: float, within: float, what: str) -> float:
    """Wait for `condition` (as `until`), then return the seconds from `since` (time.monotonic())."""
    await until(condition, within=within, what=what)
    return time.monotonic() - since


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """What `call` returned, and the seconds it took."""
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


async def failure(call: Awaitable[T]) -> T | MicrostateError:
    """What `call` raised (a MicrostateError), or what it returned."""
    try:
        return await call
    except MicrostateError as error:
        return error
