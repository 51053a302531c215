"""Who is calling, and the errors of checking it: UNAUTHENTICATED and PERMISSION_DENIED as domain errors.

The runtime's guard (microstate.server.security.guard) authenticates every call to a slice's methods when
authentication is on and sets the caller's `Principal` for the handler; `principal()` reads it anywhere below
the handler (an audit record, a per-subject rule). With authentication off every call is `ANONYMOUS`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import grpc

from microstate.server.errors import DomainError


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one call."""

    kind: str
    """"token" (a verified bearer token), "certificate" (a client certificate, mutual TLS) or "anonymous"."""
    name: str
    """The token's `sub`, or the certificate's name the scopes were found under (a SAN or the CN)."""
    issuer: str = ""
    """The token's `iss`; "" for certificates and anonymous callers."""
    scopes: frozenset[str] = frozenset()
    """What the caller may do: the token's `scope`/`scp` claim, or the scopes configured for the name."""


ANONYMOUS = Principal(kind="anonymous", name="")
"""Every caller of a server that runs without authentication."""

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "microstate_principal", default=ANONYMOUS
)


def principal() -> Principal:
    """The caller of the call being handled (ANONYMOUS when authentication is off)."""
    return _current.get()


def set_principal(caller: Principal) -> None:
    """For the runtime's guard only: each call runs in its own task, so the value stays with that call."""
    _current.set(caller)


class Unauthenticated(DomainError):
    """The credential presented does not authenticate. Say as little as possible about why: a caller that
    learns "expired" rather than "unknown" has an oracle."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The credential authenticates, but does not allow what was asked."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"
