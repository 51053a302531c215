"""The audit ledger of one served microstate: the runtime's part.

`Auditing.open` wraps the microstate's records store in an AuditedStore (so every write a call makes,
through the kit's Resources or directly, carries its entry into the backend's atomic write) and opens its
ledger and Sealer; `wrap` is the handler wrapper that opens an `audit_call` for each call to the slice's
methods (method path, contract version from the package, request id from the request's `request_id`
field or the `x-request-id` header); `start`/`stop` run the sealer in the background and seal what is left
at a clean stop. Nothing per slice: a slice is covered by being in the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import grpc

from microstate.server.audit import sealer_for
from microstate.server.audit.audited import AuditedLog, AuditedStore, SubjectOf
from microstate.server.audit.calls import AuditCall, _current, contract_of
from microstate.server.audit.keys import AuditKeys
from microstate.server.audit.ledger import Sealer
from microstate.server.handlers import preceded
from microstate.server.store.roles import StoreKind, Stores

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
AUDITED_KINDS = (StoreKind.RECORDS, StoreKind.LOG)
"""The store kinds whose writes are audited (a records write, a log append); blobs are named by digest in a
records write instead (models)."""


def checkpoint_file(directory: Path, namespace: str) -> Path:
    """The append-only file a microstate's checkpoints are copied to, outside its store."""
    return directory / f"{namespace}-checkpoints.jsonl"


class Auditing:
    def __init__(self, keys: AuditKeys, stores: Stores, sealers: list[Sealer]) -> None:
        self.keys = keys
        self.stores = stores
        """The microstate's stores with its records roles audited: what its `attach` gets."""
        self.sealers = sealers
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        namespace: str,
        stores: Stores,
        urls: dict[str, str],
        directory: Path,
        *,
        subject_of: SubjectOf | None = None,
        checkpoint_every: int | None = None,
        checkpoint_seconds: float | None = None,
        unaudited: Collection[str] = (),
    ) -> Auditing:
        """Audit the records and log roles of `stores` (opened from `urls`, by role) with the keys in
        `directory`: each gets its own journal, sealer and ledger (log id `namespace`, or
        `namespace-role` for a role other than records); the roles named in `unaudited` stay as they are."""
        keys = await asyncio.to_thread(AuditKeys.load, directory)
        opened: dict[str, tuple[Any, Any]] = {}
        sealers: list[Sealer] = []
        try:
            for role, store in stores:
                if role.kind not in AUDITED_KINDS or role.name in unaudited:
                    opened[role.name] = (role, store)
                    continue
                log_id = namespace if role.name == "records" else f"{namespace}-{role.name}"
                sealer = await sealer_for(
                    store, urls[role.name], log_id, keys, checkpoint_file=checkpoint_file(directory, log_id)
                )
                sealers.append(sealer)
                if checkpoint_every is not None:
                    sealer.checkpoint_every = checkpoint_every
                if checkpoint_seconds is not None:
                    sealer.checkpoint_seconds = checkpoint_seconds
                audited = (
                    AuditedStore(store, keys.subject_key, subject_of)
                    if role.kind is StoreKind.RECORDS
                    else AuditedLog(store, keys.subject_key)
                )
                opened[role.name] = (role, audited)
        except BaseException:
            for sealer in sealers:
                await sealer.close()
            raise
        return cls(keys, Stores(opened), sealers)

    def start(self) -> None:
        for sealer in self.sealers:
            self._tasks.append(asyncio.create_task(sealer.run(self._stopping), name=f"audit-{sealer.log_id}"))

    async def stop(self) -> None:
        """Stop sealing in the background, seal and checkpoint what is left (if the store answers), close;
        once (later calls return at once)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        started = bool(self._tasks)
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        for sealer in self.sealers:
            try:
                if started:  # a server that never served wrote nothing to seal
                    await sealer.seal_all()
            except Exception as exc:  # the journal keeps the entries: the next start seals them
                log.warning(
                    "audit: could not seal at stop; the next start will",
                    extra={"phase": "audit", "error": f"{type(exc).__name__}: {exc}"},
                )
            finally:
                await sealer.close()

    def wrap(self, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of `path`, each call of it an audited call (calls.py)."""
        contract = contract_of(path)

        async def open_call(request: Any, context: grpc.aio.ServicerContext) -> None:
            _current.set(_call(path, contract, request, context))  # each call runs in its own task

        return preceded(handler, open_call)


def _call(path: str, contract: str, request: Any, context: grpc.aio.ServicerContext) -> AuditCall:
    request_id = getattr(request, "request_id", "")
    if not isinstance(request_id, str) or not request_id:
        request_id = next(
            (str(value) for key, value in context.invocation_metadata() or () if key == REQUEST_ID_HEADER), ""
        )
    user_id = getattr(request, "user_id", None)
    subject = user_id if isinstance(user_id, str) and user_id else None
    return AuditCall(path, contract, request_id=request_id, subject=subject)
