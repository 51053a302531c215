"""A real flags server for the flags SDK tests: in this process over SQLite, restartable on its port, with
heartbeats every HEARTBEAT seconds and a count of the unary calls it answered; and flags to evaluate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from microstate.client import ClientOptions
from microstate.client.errors import Unavailable
from microstate.flags.v1 import flags_pb2 as f
from microstate.server.flags import attach_with
from microstate.server.store import open_store
from microstate.server.store.roles import Stores
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.flags.builders import cond, rollout, split
from tests.profile.test_write_commit import CountCalls

T = TypeVar("T")

HEARTBEAT = 0.2
"""Seconds between the test server's heartbeats."""
WITHIN = 10.0
"""Seconds any waited-for condition gets on a loaded machine."""


class FlagsServer(RestartableServer):
    """The real flags server; `calls` counts what it was asked (every start shares one store)."""

    def __init__(self, attach: Callable[[grpc.aio.Server], None], counter: CountCalls) -> None:
        super().__init__(attach, interceptors=[counter])
        self.calls = counter.calls


@pytest.fixture
async def flags_server(tmp_path: Path) -> AsyncIterator[FlagsServer]:
    store = await open_store("sqlite:///" + str(tmp_path / "flags.db"), "flags")
    attach = attach_with(heartbeat_interval=HEARTBEAT)
    stoppings: list[asyncio.Event] = []

    def add(server: grpc.aio.Server) -> None:
        stopping = asyncio.Event()
        stoppings.append(stopping)
        attach(server, Stores.of(store), stopping=stopping)

    server = FlagsServer(add, CountCalls())
    original_stop = server.stop

    async def stop() -> None:  # the rule set's tasks end with the server, as under the runtime
        for stopping in stoppings:
            stopping.set()
        await original_stop()

    server.stop = stop  # type: ignore[method-assign]
    await server.start()
    yield server
    await server.stop()
    await store.close()


async def once_up(call: Callable[[], Awaitable[T]]) -> T:
    """`call`'s answer once the server answers it: a restarted server's port refuses connections for a
    moment, and a channel that saw that waits out its reconnect backoff."""
    deadline = time.monotonic() + WITHIN
    while True:
        try:
            return await call()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)  # between attempts, not synchronisation


def options(target: str, **changes: Any) -> ClientOptions:
    return fast_options(target, **changes)


def model_flag(key: str = "model") -> f.Flag:
    """A string flag with three rules and a split: the shape the local evaluation bench measures."""
    names = ["small", "medium", "large", "canary"]
    return f.Flag(
        key=key,
        type=f.VARIANT_TYPE_STRING,
        variants=[f.Variant(name=n, value=f.VariantValue(string_value=n)) for n in names],
        default_variant="small",
        rules=[
            f.Rule(conditions=[cond("region", f.OPERATOR_IN, "cn-north", "cn-east")], variant="medium"),
            f.Rule(
                conditions=[
                    cond("plan", f.OPERATOR_EQUALS, "enterprise"),
                    cond("seats", f.OPERATOR_GREATER_THAN, 50),
                ],
                variant="large",
            ),
            f.Rule(
                conditions=[cond("email", f.OPERATOR_ENDS_WITH, "@example.com")],
                rollout=rollout(10_000),
                variant="canary",
            ),
            f.Rule(split=split(("small", 50), ("medium", 30), ("large", 20))),
        ],
    )


def bool_flag(key: str, on: bool = True, *, enabled: bool = True) -> f.Flag:
    return f.Flag(
        key=key,
        type=f.VARIANT_TYPE_BOOL,
        state=f.FLAG_STATE_ENABLED if enabled else f.FLAG_STATE_DISABLED,
        variants=[
            f.Variant(name="on", value=f.VariantValue(bool_value=True)),
            f.Variant(name="off", value=f.VariantValue(bool_value=False)),
        ],
        default_variant="on" if on else "off",
    )
