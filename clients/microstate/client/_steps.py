"""Operations of several calls, written once as a generator of steps that each twin drives.

A plan (`_plans.py`) is one call. Some operations are a conversation: resolve a name, then stream bytes
from where a file left off, retry from the new offset after a cut, wait for a lock another process holds.
Such an operation is a generator that yields `Step`s and gets each one's outcome back (or its exception
thrown in): `Call` (a plan, answered as the twin answers it), `Pump` (an Exchange whose items go to a sink
as they arrive) and `Pause` (wait a little, for a backoff or a lock). The async client drives it with
awaits and the sync client with blocking calls (`drive_async`, `drive_sync`), so the logic, its retries and
its deadlines are written once for both twins, as the plans are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from microstate.client._plans import Exchange, Plan

O = TypeVar("O")  # noqa: E741 - what the operation returns


@dataclass(frozen=True, slots=True)
class Call:
    plan: Plan[Any]


@dataclass(frozen=True, slots=True)
class Pump:
    exchange: Exchange[Any]
    sink: Callable[[Any], None]
    """Called with each item, in order; may raise to end the stream (the exception is thrown back in)."""


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


Step = Call | Pump | Pause
Steps = Generator[Step, Any, O]


@dataclass(frozen=True, slots=True)
class _Finished:
    value: Any


def _advance(steps: Steps[Any], outcome: Any, error: BaseException | None) -> Step | _Finished:
    """The operation's next step, given the last one's outcome or error; _Finished once it returns."""
    try:
        return steps.throw(error) if error is not None else steps.send(outcome)
    except StopIteration as stop:
        return _Finished(stop.value)


async def drive_async(
    steps: Steps[O],
    call: Callable[[Plan[Any]], Coroutine[Any, Any, Any]],
    exchange: Callable[[Exchange[Any]], AsyncGenerator[Any, None]],
) -> O:
    """Run `steps` on an async client (its `_call` and `_exchange`)."""
    outcome: Any = None
    error: BaseException | None = None
    while not isinstance(step := _advance(steps, outcome, error), _Finished):
        outcome, error = None, None
        try:
            if isinstance(step, Call):
                outcome = await call(step.plan)
            elif isinstance(step, Pump):
                items = exchange(step.exchange)
                try:
                    async for item in items:
                        step.sink(item)
                finally:
                    await items.aclose()
            else:
                await asyncio.sleep(step.seconds)  # a backoff or a lock wait, not synchronisation
        except Exception as exc:  # thrown into the operation, which decides
            error = exc
    return step.value  # type: ignore[no-any-return]


def drive_sync(
    steps: Steps[O],
    call: Callable[[Plan[Any]], Any],
    exchange: Callable[[Exchange[Any]], Generator[Any, None, None]],
) -> O:
    """Run `steps` on a sync client (its `_call` and `_exchange`)."""
    outcome: Any = None
    error: BaseException | None = None
    while not isinstance(step := _advance(steps, outcome, error), _Finished):
        outcome, error = None, None
        try:
            if isinstance(step, Call):
                outcome = call(step.plan)
            elif isinstance(step, Pump):
                items = exchange(step.exchange)
                try:
                    for item in items:
                        step.sink(item)
                finally:
                    items.close()
            else:
                time.sleep(step.seconds)  # a backoff or a lock wait, not synchronisation
        except Exception as exc:  # thrown into the operation, which decides
            error = exc
    return step.value  # type: ignore[no-any-return]
