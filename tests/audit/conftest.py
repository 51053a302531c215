"""The audit tests' fixtures: `backend` runs a test once per records backend (real redis-server, real
Mongo-wire server), as in the store conformance suite; `ledger` is an audited store on it with its sealer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from microstate.server.audit import AuditedStore, AuditKeys, Sealer, audit_call, open_audited
from microstate.server.store.base import ABSENT
from tests.conformance.conftest import Backend, backend, namespace  # noqa: F401  (fixtures)


@dataclass
class Ledger:
    store: AuditedStore
    sealer: Sealer
    keys: AuditKeys
    key_dir: Path
    checkpoints: Path
    """The checkpoint file: the copy kept outside the store."""


@pytest.fixture
async def ledger(backend: Backend, namespace: str, tmp_path: Path) -> AsyncIterator[Ledger]:  # noqa: F811
    key_dir = tmp_path / "audit"
    keys = AuditKeys.load(key_dir)
    checkpoints = key_dir / "checkpoints.jsonl"
    store, sealer = await open_audited(
        backend.url, namespace, keys, subject_of=lambda key: key, checkpoint_file=checkpoints
    )
    sealer.batch = 8  # several ledger records, so tampering can cross their edges
    try:
        yield Ledger(store, sealer, keys, key_dir, checkpoints)
    finally:
        await store.close()
        await sealer.close()


async def write_some(store: AuditedStore, count: int) -> None:
    """`count` audited writes: creates, then an update and a delete of every fourth key."""
    with audit_call(
        "/microstate.profile.v2.ProfileService/UpdateProfile", "microstate.profile.v2", request_id="r"
    ):
        for i in range(count):
            key = f"u{i // 3}"
            current = await store.get(key)
            if current is None:
                await store.put(key, f"v{i}".encode(), if_match=ABSENT)
            elif i % 4 == 0:
                await store.delete(key, if_match=current.revision)
            else:
                await store.put(key, f"v{i}".encode(), if_match=current.revision)
