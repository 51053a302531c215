"""The feature-flags microstate (microstate.flags.v1): typed flags with targeting rules and flagd's sticky
bucketing, evaluated by the server or, from a rule set synced over SyncFlags, by the SDK, with the one
evaluator both share (microstate.client.flags.evaluation)."""

from __future__ import annotations

import asyncio

import grpc

from microstate.server.flags import extraction, subject_data
from microstate.server.flags.domain import HEARTBEAT_INTERVAL, FlagsDomain
from microstate.server.flags.servicer import SERVICE, FlagServicer
from microstate.server.kit import subjects, wire
from microstate.server.registry import Attach, Microstate
from microstate.server.store.roles import Stores


def attach_with(*, heartbeat_interval: float = HEARTBEAT_INTERVAL) -> Attach:
    """An attach function whose SyncFlags streams send a heartbeat after `heartbeat_interval` seconds of
    silence (tests shorten it)."""

    def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
        domain = FlagsDomain(stores.records(), stopping=stopping, heartbeat_interval=heartbeat_interval)
        wire.add_service(server, SERVICE, FlagServicer(domain, stopping))

    return attach


SCOPES = {  # what each method needs when authentication is on
    "GetFlag": "flags.read",
    "ListFlags": "flags.read",
    # An evaluator needs the rules: evaluating on the server, or syncing them to evaluate locally.
    "EvaluateFlag": "flags.evaluate",
    "EvaluateAll": "flags.evaluate",
    "SyncFlags": "flags.evaluate",
    "CreateFlag": "flags.admin",
    "UpdateFlag": "flags.admin",
    "DeleteFlag": "flags.admin",
}

MICROSTATE = Microstate(
    name="flags",
    default_port=50053,
    service_names=(SERVICE.full_name, subjects.SERVICE_NAME),
    attach=attach_with(),
    scopes={**SCOPES, **subjects.SCOPES},
    subjects=subject_data.declaration,
    reconcile=extraction.RECONCILABLE,  # `microstate reconcile flags` against monolith toggles
)
