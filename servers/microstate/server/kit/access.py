"""Errors of slices that check credentials: UNAUTHENTICATED and PERMISSION_DENIED as domain errors."""

from __future__ import annotations

import grpc

from microstate.server.errors import DomainError


class Unauthenticated(DomainError):
    """The credential presented does not authenticate. Say as little as possible about why: a caller that
    learns "expired" rather than "unknown" has an oracle."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The credential authenticates, but does not allow what was asked."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"
