"""Operations written once as step generators run the same on both drivers: outcomes go back in, errors are
thrown in where the operation can decide, pumped items reach the sink in order, and the return is the
operation's."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

from microstate.client._plans import Answered, Exchange
from microstate.client._steps import Call, Pause, Pump, Steps, drive_async, drive_sync


class Refused(Exception):
    pass


def operation(seen: list[Any]) -> Steps[str]:
    first = yield Call(Answered(1))
    try:
        yield Call(Answered("refuse"))
    except Refused:
        seen.append("refused")
    yield Pause(0)
    yield Pump(Exchange("M", [10, 20, 30], None, (), lambda item: item), seen.append)
    return f"done after {first}"


def call(plan: Any) -> Any:
    if plan.value == "refuse":
        raise Refused
    return plan.value


def exchange(planned: Exchange[Any]) -> Generator[Any, None, None]:
    yield from planned.requests


async def acall(plan: Any) -> Any:
    return call(plan)


async def aexchange(planned: Exchange[Any]) -> AsyncGenerator[Any, None]:
    for item in planned.requests:
        yield item


def test_the_sync_driver_runs_an_operation() -> None:
    seen: list[Any] = []
    assert drive_sync(operation(seen), call, exchange) == "done after 1"
    assert seen == ["refused", 10, 20, 30]


async def test_the_async_driver_runs_the_same_operation_the_same_way() -> None:
    seen: list[Any] = []
    assert await drive_async(operation(seen), acall, aexchange) == "done after 1"
    assert seen == ["refused", 10, 20, 30]


def test_an_error_the_operation_does_not_handle_ends_it() -> None:
    def failing() -> Steps[None]:
        yield Call(Answered("refuse"))

    with pytest.raises(Refused):
        drive_sync(failing(), call, exchange)
