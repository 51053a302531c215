"""The microstates this server package can run, and what the runtime needs to host one.

A microstate plugs into the shared runtime (runtime.py) by declaring a
`Microstate`: its name, default port, the gRPC service names it serves (for
health and reflection), the store roles it keeps its state in (store/roles.py)
and an `attach` function that adds its servicers to a grpc.aio server on top of
its opened stores, and the scope each of its methods needs. Adding a slice means adding one entry
to `MICROSTATES`; the runtime, CLI and `microstate up` need no change.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc

from microstate.server.store.roles import RECORDS, StoreRole, Stores

if TYPE_CHECKING:
    from microstate.server.kit.extraction import Reconcilable
    from microstate.server.kit.migrations import Schema
    from microstate.server.kit.subjects import Declaration


class Attach(Protocol):
    def __call__(
        self, server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None
    ) -> None:
        """Add servicers to `server`; streams end when `stopping` is set (the runtime sets it on stop)."""


@dataclass(frozen=True)
class Microstate:
    name: str
    """CLI name, as in `microstate serve profile`; also the store namespace."""
    default_port: int
    service_names: tuple[str, ...]
    """Fully qualified gRPC service names, one per served contract version."""
    attach: Attach
    """Add this microstate's servicers to `server`, backed by its opened `stores`."""
    stores: tuple[StoreRole, ...] = (RECORDS,)
    """The store roles it keeps its state in; the first is opened from --store."""
    scopes: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The scope each method needs, by method name, for every method of every served contract version:
    one line per method, e.g. {"GetProfile": "profile.read"}. With authentication on, a call needs its
    method's scope (security/guard.py), and a server whose slice leaves a method out refuses to start."""
    server_options: tuple[tuple[str, int], ...] = ()
    """gRPC core arguments its server needs beyond the shared ones (runtime.server_options), e.g. the model
    registry's ("grpc.http2.bdp_probe", 0), which keeps an upload's receive buffers from growing."""
    settles_within: float = 0.0
    """Seconds within which its background work (e.g. telemetry's fold) has written what a call it
    answered set going; 0: every call has written all it writes before it answers. Tests that compare
    stored state around a call first wait for the state to hold still this long."""
    audit_subject: Callable[[str], str | None] | None = None
    """The data subject (e.g. a user id) a record key of its records store concerns, for the audit ledger's
    pseudonymous subject reference (audit/); None: its records concern no person. Every write a call makes
    is audited whatever this says (audit/serving.py)."""
    unaudited_roles: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Why the writes to each of its store roles that are not records stores make no ledger entry, by role
    name (the registry test requires one reason per such role), e.g. {"blobs": "..."}."""
    subjects: Declaration | None = None
    """Where it keeps a data subject's data (kit/subjects.py), for GDPR export and erase; the runtime then
    serves microstate.subjects.v1 next to its own contract, which it lists in `service_names`. Every
    registered slice declares it (`kit.subjects.NOTHING` when it keeps nothing about a subject)."""
    prepare: Callable[[Path], dict[str, str]] | None = None
    """What `microstate up` runs before starting it: make what it needs in the data directory (e.g. a key
    file) and return environment settings for its process (MICROSTATE_* names)."""
    schema: Schema | None = None
    """The schema versions of its records (kit/migrations.py), if it declares any: `microstate migrate`
    moves its records between them, and `serve` refuses a namespace at a version it does not know."""
    reconcile: Reconcilable | None = None
    """How `microstate reconcile` compares its records with the monolith it is being extracted from and
    repairs them (kit/extraction.py); None: it has no legacy side to reconcile with."""


# name -> "module:attribute"; imported lazily so one slice's import cost or failure stays its own.
_ENTRIES: dict[str, str] = {
    "profile": "microstate.server.profile:MICROSTATE",
    "session": "microstate.server.session:MICROSTATE",
    "flags": "microstate.server.flags:MICROSTATE",
    "models": "microstate.server.models:MICROSTATE",
    "telemetry": "microstate.server.telemetry:MICROSTATE",
}


def names() -> list[str]:
    return list(_ENTRIES)


def get(name: str) -> Microstate:
    try:
        module_name, attribute = _ENTRIES[name].split(":")
    except KeyError:
        raise KeyError(f"unknown microstate {name!r}; known: {', '.join(_ENTRIES)}") from None
    microstate: Microstate = getattr(importlib.import_module(module_name), attribute)
    return microstate
