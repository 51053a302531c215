"""The telemetry microstate (microstate.telemetry.v1): batched events, exactly once, folded into rollups.

Two store roles: `log` holds the batches as they arrive (raw events, kept MICROSTATE_TELEMETRY_RAW_TTL
seconds, default a day, at least 10 minutes), `records` the minute rollups (kept
MICROSTATE_TELEMETRY_ROLLUP_TTL seconds, default 30 days) and the fold's checkpoint. One Redis URL serves
both. A folder task per server process folds the log into the rollups (folder.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping

import grpc

from microstate.server.config import ConfigError
from microstate.server.kit import subjects, wire
from microstate.server.registry import Microstate
from microstate.server.store.roles import RECORDS, StoreKind, StoreRole, Stores
from microstate.server.telemetry import folder, rules, subject_data
from microstate.server.telemetry.domain import TelemetryDomain
from microstate.server.telemetry.servicer import SERVICE, TelemetryServicer

LOG = StoreRole("log", StoreKind.LOG)
RAW_TTL_ENV = "MICROSTATE_TELEMETRY_RAW_TTL"
ROLLUP_TTL_ENV = "MICROSTATE_TELEMETRY_ROLLUP_TTL"


def _seconds(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= minimum:
        raise ConfigError(f"{name}: expected seconds, at least {minimum:g}, got {text!r}")
    return value


def retention(environ: Mapping[str, str] = os.environ) -> tuple[float, float]:
    """(raw, rollup) retention in seconds from the environment; ConfigError when unusable."""
    raw = _seconds(environ, RAW_TTL_ENV, rules.DEFAULT_RAW_TTL, rules.MIN_RAW_TTL)
    rollup = _seconds(environ, ROLLUP_TTL_ENV, rules.DEFAULT_ROLLUP_TTL, rules.MINUTE)
    return raw, rollup


async def _fold_until(fold: folder.Folder, stopping: asyncio.Event | None) -> None:
    """Run the folder until the server stops (a stop mid-round loses nothing: the fold is replayable)."""
    task = asyncio.create_task(fold.run(), name="telemetry-fold")
    try:
        await (stopping or asyncio.Event()).wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_running: set[asyncio.Task[None]] = set()
"""The fold tasks, held so they are not collected while they run."""


def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
    raw_ttl, rollup_ttl = retention()
    records, log_store = stores.records(), stores.log(LOG.name)
    fold = folder.Folder(log_store, records, raw_ttl=raw_ttl, rollup_ttl=rollup_ttl)
    task = asyncio.get_running_loop().create_task(_fold_until(fold, stopping))
    _running.add(task)
    task.add_done_callback(_running.discard)
    domain = TelemetryDomain(log_store, records, fold, rollup_ttl=rollup_ttl)
    wire.add_service(server, SERVICE, TelemetryServicer(domain, stopping))


SCOPES = {  # what each method needs when authentication is on
    "RecordEvents": "telemetry.write",
    "QueryCounts": "telemetry.read",
    "QueryAggregates": "telemetry.read",
    "WatchAggregates": "telemetry.read",
}

MICROSTATE = Microstate(
    name="telemetry",
    default_port=50055,
    service_names=(SERVICE.full_name, subjects.SERVICE_NAME),
    attach=attach,
    stores=(RECORDS, LOG),
    scopes={**SCOPES, **subjects.SCOPES},
    subjects=subject_data.declaration,
    settles_within=2 * (folder.ROUND_SECONDS + folder.POLL_SECONDS),
)
