"""The audited call a write belongs to: who, which method, which contract version, which request.

The runtime opens one `AuditCall` per call to a slice's methods (`audit_call`, from the handler wrapper in
runtime.py); an `AuditedStore` turns every write made inside it into an audit entry. Code that writes
outside an RPC (a GDPR coordinator, a CLI) opens its own `audit_call` around its writes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

from microstate.server.kit.access import principal
from microstate.server.store.base import Record


@dataclass(slots=True)
class AuditCall:
    method: str
    """"/microstate.profile.v2.ProfileService/UpdateProfile", or a coordinator's step, "gdpr.erase/start"."""
    contract: str
    """The contract version that processes the call: the proto package, "microstate.profile.v2"."""
    request_id: str = ""
    actor: str = ""
    """Who asks; "" means the call's authenticated principal (kit/access.py), read at each write."""
    subject: str | None = None
    """The data subject id the writes concern when the slice's declared `audit_subject` names none for the
    key written (the runtime takes a request's `user_id` field)."""
    status: str = "OK"
    """What the entries say of the call: "OK" for an RPC's committed writes; a coordinator names its step's
    outcome ("STARTED", "DONE", "FAILED")."""
    seen: dict[str, Record] = field(default_factory=dict)
    """Records this call read, by key: a write guarded by one of their revisions knows its before-value."""

    def principal(self) -> str:
        if self.actor:
            return self.actor
        caller = principal()
        if caller.kind == "token":
            return f"token:{caller.name}@{caller.issuer}"
        if caller.kind == "certificate":
            return f"certificate:{caller.name}"
        return caller.kind


_current: contextvars.ContextVar[AuditCall | None] = contextvars.ContextVar(
    "microstate_audit_call", default=None
)


def current_call() -> AuditCall | None:
    """The audited call being handled, None outside one (a server's own background work)."""
    return _current.get()


@contextlib.contextmanager
def audit_call(
    method: str,
    contract: str,
    *,
    request_id: str = "",
    actor: str = "",
    subject: str | None = None,
    status: str = "OK",
) -> Iterator[AuditCall]:
    """Every write through an AuditedStore inside this block is audited as part of this call.

    For a GDPR coordinator: `with audit_call("gdpr.erase/start", "microstate.gdpr.v1", request_id=rid,
    actor="gdpr-coordinator", subject=subject_id, status="STARTED"): await store.put(...)` — the entry is
    written in the same atomic step as the put of the coordinator's request record."""
    token = _current.set(
        AuditCall(method, contract, request_id=request_id, actor=actor, subject=subject, status=status)
    )
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


def contract_of(path: str) -> str:
    """ "/microstate.profile.v2.ProfileService/UpdateProfile" -> "microstate.profile.v2"."""
    service = path.lstrip("/").partition("/")[0]
    return service.rpartition(".")[0]
