"""The GDPR coordinator: one subject's export or erase across every microstate, resumable after a crash.

Each request is a record in the coordinator's own store (`requests/<request id>`, JSON): its kind, the
subject (only while the request is open: a finished request names no one), and the state of each microstate
(PENDING, DONE, FAILED, with what it answered). Every change of the record is written before the next step,
so a coordinator killed at any point resumes the open request for the same subject where it stopped: a
microstate already DONE is not asked again, one that may have been asked is asked again with the same
request id (`<request id>.<microstate>`), which the microstate applies once (kit/subjects.py receipts).

Start, each microstate's result and completion are audit steps (`Audit`); the audit ledger turns each into
an entry committed with the record's write (see `Audit`).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from microstate.server.audit import audit_call
from microstate.server.kit.subjects import Forgetting
from microstate.server.store.base import ABSENT, Store
from microstate.subjects.v1 import subjects_pb2 as pb

CONTRACT = "microstate.subjects.v1"
ACTOR = "gdpr-coordinator"
"""The principal the ledger names for the coordinator's own steps."""
PREFIX = "requests/"
CALL_TIMEOUT = 60.0
"""Seconds one microstate has to answer an erase, or to finish streaming an export."""

PENDING, DONE, FAILED, OPEN = "PENDING", "DONE", "FAILED", "OPEN"


Step = AbstractContextManager[object]


class Audit(Protocol):
    """Where the coordinator's steps are audited. `step(...)` wraps the write of the request record that
    records the step, so an audited store can commit the entry with it (the ledger's `audit_call`, with
    method `gdpr.<kind>/<step>`, contract `microstate.subjects.v1`, actor "gdpr-coordinator")."""

    def step(self, method: str, *, request_id: str, subject: str, status: str) -> Step: ...


class NoAudit:
    """Steps recorded in the request record only (a coordinator over a store that is not audited)."""

    def step(self, method: str, *, request_id: str, subject: str, status: str) -> Step:
        return contextlib.nullcontext()


class LedgerAudit:
    """Steps as audit-ledger calls: the request record's write inside one commits its entry with it (the
    coordinator's store must be an AuditedStore, see audit.open_audited)."""

    def step(self, method: str, *, request_id: str, subject: str, status: str) -> Step:
        return audit_call(
            method, CONTRACT, request_id=request_id, actor=ACTOR, subject=subject, status=status
        )


@dataclass(frozen=True)
class Target:
    """A microstate to ask, and how to reach it."""

    name: str
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...] = ()


class Failed(Exception):
    """Some microstates failed; the request stays open and a rerun resumes it."""


class Coordinator:
    def __init__(self, store: Store, targets: Sequence[Target], audit: Audit | None = None) -> None:
        if not isinstance(store, Forgetting):  # a finished request would still name its subject
            raise TypeError(f"{type(store).__name__} cannot forget history: the coordinator needs it")
        self._store = store
        self._forgetting: Forgetting = store
        self._targets = {target.name: target for target in targets}
        self._audit = audit or NoAudit()

    # -- the request record --------------------------------------------------------------------------------

    async def _open_request(self, kind: str, subject: str) -> tuple[dict[str, Any], int]:
        """The open request of `kind` for `subject` (resumed), or a new one: (record, revision)."""
        after: str | None = None
        while True:
            page = await self._store.list(PREFIX, after=after, limit=200)
            for stored in page.records:
                record = json.loads(stored.value)
                if record["state"] == OPEN and record["kind"] == kind and record.get("subject") == subject:
                    return record, stored.revision
            if page.next_after is None:
                break
            after = page.next_after
        request_id = str(uuid.uuid4())
        record = {
            "request_id": request_id,
            "kind": kind,
            "subject": subject,
            "state": OPEN,
            "start_time": time.time(),
            "microstates": {name: {"state": PENDING} for name in self._targets},
        }
        with self._audit.step(f"gdpr.{kind}/start", request_id=request_id, subject=subject, status="STARTED"):
            written = await self._store.put(PREFIX + request_id, _encode(record), if_match=ABSENT)
        return record, written.revision

    async def _save(
        self, record: dict[str, Any], revision: int, method: str, subject: str, status: str
    ) -> int:
        with self._audit.step(method, request_id=record["request_id"], subject=subject, status=status):
            written = await self._store.put(PREFIX + record["request_id"], _encode(record), if_match=revision)
        return written.revision

    async def _finish(self, record: dict[str, Any], revision: int, subject: str) -> int:
        """Close the request; it then names no subject, and the store forgets the versions that did."""
        failed = any(part["state"] != DONE for part in record["microstates"].values())
        if failed:
            return revision
        record.update(state=DONE, finish_time=time.time())
        del record["subject"]
        kind = record["kind"]
        revision = await self._save(record, revision, f"gdpr.{kind}/complete", subject, DONE)
        await self._forgetting.forget([PREFIX + record["request_id"]], keep_deletions=False)
        return revision

    # -- erase -----------------------------------------------------------------------------------------------

    async def erase(self, subject: str) -> dict[str, Any]:
        """Erase `subject` on every target; the finished record. Raises Failed (request left open)."""
        record, revision = await self._open_request("erase", subject)
        request_id = record["request_id"]
        for name, part in record["microstates"].items():
            if part["state"] == DONE:
                continue
            target = self._targets.get(name)
            if target is None:  # a rerun not given this microstate's address
                part.update(state=FAILED, error="no target given")
                continue
            try:
                answer = await target.channel.unary_unary(
                    f"/{CONTRACT}.SubjectService/EraseSubject",
                    request_serializer=pb.EraseSubjectRequest.SerializeToString,
                    response_deserializer=pb.EraseSubjectResponse.FromString,
                )(
                    pb.EraseSubjectRequest(subject_id=subject, request_id=f"{request_id}.{name}"),
                    timeout=CALL_TIMEOUT,
                    metadata=target.metadata,
                )
            except grpc.aio.AioRpcError as error:
                part.update(state=FAILED, error=f"{error.code().name}: {error.details()}")
            else:
                part.pop("error", None)
                part.update(
                    state=DONE,
                    erased=answer.erased_count,
                    retained=[[kept.kind, kept.reason] for kept in answer.retained],
                    replayed=answer.replayed,
                )
            revision = await self._save(record, revision, f"gdpr.erase/{name}", subject, part["state"])
        await self._finish(record, revision, subject)
        if record["state"] != DONE:
            raise Failed(_failures(record))
        return record

    # -- export ----------------------------------------------------------------------------------------------

    async def export(self, subject: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Everything every target holds about `subject`: the finished record and, per microstate, its
        records as JSON Lines. Raises Failed (request left open) if a microstate fails."""
        record, revision = await self._open_request("export", subject)
        lines: dict[str, list[str]] = {}
        for name, part in record["microstates"].items():  # all again on a resume: the lines are not kept
            target = self._targets.get(name)
            if target is None:
                part.update(state=FAILED, error="no target given")
                continue
            try:
                lines[name] = [line async for line in self._export_lines(target, subject)]
            except grpc.aio.AioRpcError as error:
                part.update(state=FAILED, error=f"{error.code().name}: {error.details()}")
            else:
                part.pop("error", None)
                part.update(state=DONE, records=len(lines[name]))
            revision = await self._save(record, revision, f"gdpr.export/{name}", subject, part["state"])
        await self._finish(record, revision, subject)
        if record["state"] != DONE:
            raise Failed(_failures(record))
        return record, lines

    @staticmethod
    async def _export_lines(target: Target, subject: str) -> AsyncIterator[str]:
        call = target.channel.unary_stream(
            f"/{CONTRACT}.SubjectService/ExportSubject",
            request_serializer=pb.ExportSubjectRequest.SerializeToString,
            response_deserializer=pb.SubjectRecord.FromString,
        )(pb.ExportSubjectRequest(subject_id=subject), timeout=CALL_TIMEOUT, metadata=target.metadata)
        async for item in call:
            data = json.loads(item.json)
            yield json.dumps(
                {"microstate": item.microstate, "kind": item.kind, "key": item.key, "data": data},
                sort_keys=True,
                ensure_ascii=False,
            )


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _failures(record: Mapping[str, Any]) -> str:
    failed = {name: part.get("error", part["state"]) for name, part in record["microstates"].items()}
    return "; ".join(f"{name}: {why}" for name, why in failed.items() if why != DONE)
