"""Telemetry tests run on SQLite and Redis by default, on every store backend under `slow`, records and log on
the same one, with the conformance suites' fixtures (`backend`, `store`, `log`).

`stores` are the slice's two roles; `stub` serves telemetry in this process over gRPC.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest

from microstate.server.store import Store
from microstate.server.store.log import LogStore
from microstate.server.store.roles import RECORDS, Stores
from microstate.server.telemetry import LOG, MICROSTATE
from microstate.telemetry.v1 import telemetry_pb2 as pb
from microstate.telemetry.v1 import telemetry_pb2_grpc
from tests.conformance.conftest import namespace, store, store_factory  # noqa: F401
from tests.conformance_log.conftest import log, log_factory  # noqa: F401
from tests.support.inproc import serve_in_process
from tests.support.slice_backends import slice_backend  # noqa: F401

MINUTE_NS = 60_000_000_000


def this_minute_ns() -> int:
    return time.time_ns() // MINUTE_NS * MINUTE_NS


def event(name: str = "latency", value: float = 1.0, **attributes: str) -> pb.Event:
    return pb.Event(name=name, value=value, attributes=attributes, time_unix_nano=time.time_ns())


@pytest.fixture
def stores(store: Store, log: LogStore) -> Stores:  # noqa: F811 (fixtures)
    return Stores({RECORDS.name: (RECORDS, store), LOG.name: (LOG, log)})


@pytest.fixture
async def stub(stores: Stores) -> AsyncIterator[telemetry_pb2_grpc.TelemetryServiceStub]:
    async with (
        serve_in_process(MICROSTATE, stores) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        yield telemetry_pb2_grpc.TelemetryServiceStub(channel)
