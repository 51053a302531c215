"""Appends to a log store (telemetry's events) are audited on every backend: one entry per append, in the
same atomic step, none for a duplicate; the log's ledger seals and verifies like a records store's."""

from __future__ import annotations

from pathlib import Path

from microstate.server.audit import AuditKeys, audit_call, sealer_for
from microstate.server.audit.audited import AuditedLog
from microstate.server.audit.checkpoints import newest_in_file
from microstate.server.audit.entries import Entry
from microstate.server.audit.ledger import export_lines
from microstate.server.audit.verify import verify
from microstate.server.store.log import open_log
from tests.conformance.conftest import Backend


async def test_each_append_in_a_call_journals_one_entry_and_a_duplicate_none(
    backend: Backend, namespace: str, tmp_path: Path
) -> None:
    keys = AuditKeys.load(tmp_path / "audit")
    inner = await open_log(backend.url, namespace)
    log = AuditedLog(inner, keys.subject_key)
    sealer = await sealer_for(inner, backend.url, namespace, keys, checkpoint_file=tmp_path / "cp.jsonl")
    try:
        await log.append([b"outside a call"])  # the server's own: not audited
        with audit_call("/microstate.telemetry.v1.TelemetryService/RecordEvents", "microstate.telemetry.v1"):
            first = await log.append([b"a", b"b"], dedupe_key="p1:1")
            again = await log.append([b"a", b"b"], dedupe_key="p1:1")
            second = await log.append([b"c"], dedupe_key="p1:2")
        assert again.duplicate
        journal = await inner.audit_journal(0, 10)
        assert [position for position, _ in journal] == [first.positions[0], second.positions[0]]
        entries = [Entry.decode(entry) for _, entry in journal]
        assert [(e.resource, e.operation, e.contract) for e in entries] == [
            ("p1:1", "append", "microstate.telemetry.v1"),
            ("p1:2", "append", "microstate.telemetry.v1"),
        ]
        assert entries[0].after != entries[1].after
        await sealer.seal_all()
        checkpoint = newest_in_file(tmp_path / "cp.jsonl")
        assert checkpoint is not None
        lines = [line async for line in export_lines(sealer.ledger)]
        report = verify(lines, checkpoint, keys.public_key, keys.chain_keys)
        assert report.ok and report.entries == 2, report.lines()
    finally:
        await sealer.close()
        await inner.close()
