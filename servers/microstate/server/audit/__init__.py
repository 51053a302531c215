"""The tamper-evident audit ledger every microstate keeps (issue 15, item 3).

Every write a call makes through an `AuditedStore` appends an `Entry` (who, which method, which contract
version, which key, digests of the value before and after, request id, status, pseudonymous subject
reference) to the namespace's audit journal in the same atomic step as the write. A `Sealer` chains the
journal with HMAC (key ids recorded, keys rotate), hashes it into an RFC 6962 Merkle tree and signs
checkpoints with Ed25519, written to the ledger and outside the store. `microstate audit verify` checks an
exported ledger offline (verify.py).

Public API for other parts of the server (e.g. a GDPR coordinator):

- `subject_ref(subject_id, key)` / `AuditKeys.subject_ref(subject_id)`: the pseudonymous subject reference;
- `AuditKeys.load(directory)`: the server's audit keys (made on first use);
- `audit_call(...)`: a block whose writes through an AuditedStore are audited as one call;
- `open_audited(url, namespace, keys, ...)`: an AuditedStore over a store of `url`, with its Sealer.
"""

from __future__ import annotations

from pathlib import Path

from microstate.server.audit.audited import AuditedStore, SubjectOf
from microstate.server.audit.calls import AuditCall, audit_call, contract_of, current_call
from microstate.server.audit.checkpoints import Checkpoint
from microstate.server.audit.entries import Entry, subject_ref
from microstate.server.audit.keys import AuditKeys
from microstate.server.audit.ledger import Journal, Sealer, ledger_namespace

__all__ = [
    "AuditCall",
    "AuditKeys",
    "AuditedStore",
    "Checkpoint",
    "Entry",
    "Sealer",
    "SubjectOf",
    "audit_call",
    "contract_of",
    "current_call",
    "ledger_namespace",
    "open_audited",
    "sealer_for",
    "subject_ref",
]


async def sealer_for(
    store: Journal, url: str, namespace: str, keys: AuditKeys, *, checkpoint_file: Path | None = None
) -> Sealer:
    """The Sealer of `store`'s journal (a records or log store opened from `url`): it opens the ledger, a
    records store of namespace ledger_namespace(namespace) at the same URL; `Sealer.run` it in the
    background, `close` it after."""
    from microstate.server.store import open_store  # the store package imports backends: keep it lazy

    ledger = await open_store(url, ledger_namespace(namespace))
    return Sealer(store, ledger, namespace, keys, checkpoint_file=checkpoint_file)


async def open_audited(
    url: str,
    namespace: str,
    keys: AuditKeys,
    *,
    subject_of: SubjectOf | None = None,
    checkpoint_file: Path | None = None,
) -> tuple[AuditedStore, Sealer]:
    """A records store of `url` whose writes inside `audit_call` blocks are audited, and its Sealer.

    E.g. a coordinator keeping its request records in namespace "gdpr":
        keys = AuditKeys.load(key_dir)
        store, sealer = await open_audited(url, "gdpr", keys, checkpoint_file=key_dir / "gdpr.jsonl")
        with audit_call("gdpr.erase/start", "microstate.gdpr.v1", request_id=rid, actor="gdpr-coordinator",
                        subject=subject_id, status="STARTED"):
            await store.put(f"requests/{rid}", record, if_match=ABSENT)   # the entry commits with the put
        await sealer.seal_all()   # or run `sealer.run(stopping)` in the background
        await store.close(); await sealer.close()
    """
    from microstate.server.store import open_store

    inner = await open_store(url, namespace)
    try:
        sealer = await sealer_for(inner, url, namespace, keys, checkpoint_file=checkpoint_file)
    except BaseException:
        await inner.close()
        raise
    return AuditedStore(inner, keys.subject_key, subject_of), sealer
