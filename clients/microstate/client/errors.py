"""One exception hierarchy for every Microstate client (AIP-193 rich errors, unpacked).

Every failed call raises a `MicrostateError` subclass chosen by an explicit status → class table, at the
point where the call is awaited, chained `from` the grpc error. The rich details the servers pack into
`grpc-status-details-bin` (ErrorInfo, BadRequest, PreconditionFailure, RetryInfo) become plain attributes,
so callers never parse protobuf `Any`s and never see a raw `grpc.RpcError` / `grpc.aio.AioRpcError`.

A few reasons refine their status's class: FAILED_PRECONDITION with reason CONTRACT_VERSION_NOT_SERVED
raises `ContractVersionNotServed` (a `FailedPrecondition`), with the requested and served contracts;
RESOURCE_EXHAUSTED with reason RESPONSE_TOO_LARGE raises `ResponseTooLarge` (a `ResourceExhausted`).

Three errors are born in the client rather than on the wire:
`NoSnapshotError` (a read could not be answered live and no snapshot exists), and the fallback reasons
`CircuitOpenError` and `LatencyBudgetExceeded`, which appear as `Read.fallback_reason` or as the
`__cause__` of a `NoSnapshotError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "microstate.dev"
"""The ErrorInfo domain of every Microstate error, server- or client-born."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One google.rpc.BadRequest field violation: which request field is wrong, and why."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class PreconditionViolation:
    """One google.rpc.PreconditionFailure violation, e.g. type "ETAG" for a stale etag."""

    type: str
    subject: str
    description: str


class MicrostateError(Exception):
    """Base of every error a Microstate client raises.

    Attributes:
        code: the gRPC status code.
        message: the human-readable status message.
        reason: the ErrorInfo reason (UPPER_SNAKE, e.g. "PROFILE_NOT_FOUND"); "" when the peer sent none.
        domain: the ErrorInfo domain ("microstate.dev"); "" when the peer sent none.
        metadata: the ErrorInfo metadata, e.g. {"current_etag": ...} on an etag mismatch.
        field_violations: from google.rpc.BadRequest.
        precondition_violations: from google.rpc.PreconditionFailure.
        retry_delay: seconds, from google.rpc.RetryInfo; None when the peer gave no hint.
        status: the whole google.rpc.Status, for details this class does not unpack; None if absent.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        precondition_violations: tuple[PreconditionViolation, ...] = (),
        retry_delay: float | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.field_violations = field_violations
        self.precondition_violations = precondition_violations
        self.retry_delay = retry_delay
        self.status = status

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class Cancelled(MicrostateError):
    code = grpc.StatusCode.CANCELLED


class Unknown(MicrostateError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(MicrostateError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(MicrostateError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(MicrostateError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MicrostateError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(MicrostateError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(MicrostateError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ResponseTooLarge(ResourceExhausted):
    """The server refused to answer because the response would exceed the contract's size limit (4 MiB),
    e.g. a BatchGet of many large records. The SDK splits such a batch by itself; other calls ask for less.

    Attributes:
        response_bytes: how large the response would have been; None if the server did not say.
        max_response_bytes: the limit; None if the server did not say.
    """

    REASON = "RESPONSE_TOO_LARGE"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.response_bytes = _int_or_none(self.metadata.get("response_bytes"))
        self.max_response_bytes = _int_or_none(self.metadata.get("max_response_bytes"))


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class FailedPrecondition(MicrostateError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ContractVersionNotServed(FailedPrecondition):
    """The server does not serve the contract version the client is pinned to (x-microstate-contract).

    Raised at the first call, whatever it is: a read never falls back to a snapshot for it and it does
    not count against the circuit breaker, because the server answered. Upgrade the server, or use the
    client of a version it serves. `check_contract()` on a client surfaces it at connect time.

    Attributes:
        requested: the contract the client is pinned to, e.g. "microstate.profile.v2".
        served: the contracts the server serves, e.g. ("microstate.profile.v1",).
    """

    REASON = "CONTRACT_VERSION_NOT_SERVED"

    def __init__(self, message: str, **details: Any) -> None:
        metadata: Mapping[str, str] = details.get("metadata") or {}
        requested = metadata.get("requested", "")
        served = tuple(name.strip() for name in metadata.get("served", "").split(",") if name.strip())
        if requested:
            message = (
                f"the server does not serve contract {requested}, which this client is pinned to;"
                f" it serves {', '.join(served) or 'no contract it names'}"
            )
        super().__init__(message, **details)
        self.requested = requested
        self.served = served


class Aborted(MicrostateError):
    """ABORTED: for Microstate writes, an etag mismatch (AIP-154); re-read and retry."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(MicrostateError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(MicrostateError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(MicrostateError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(MicrostateError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(MicrostateError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(MicrostateError):
    code = grpc.StatusCode.UNAUTHENTICATED


class CircuitOpenError(Unavailable):
    """The client's circuit breaker is open, so the call was not sent (reason CIRCUIT_OPEN)."""

    def __init__(self, target: str) -> None:
        super().__init__(
            f"circuit breaker open for {target}; the call was not sent", reason="CIRCUIT_OPEN", domain=DOMAIN
        )


class LatencyBudgetExceeded(DeadlineExceeded):
    """A read outlived its latency budget while a snapshot was there to serve instead."""

    def __init__(self, budget: float) -> None:
        super().__init__(
            f"no live answer within the {budget:g}s latency budget",
            reason="LATENCY_BUDGET_EXCEEDED",
            domain=DOMAIN,
        )


class NoSnapshotError(MicrostateError):
    """A read could not be answered live and there is no snapshot to fall back on.

    Its code is that of the live failure (UNAVAILABLE or DEADLINE_EXCEEDED), so generic handlers still see
    an availability problem; the failure itself is `fallback_reason` and `__cause__`.
    """

    def __init__(self, keys: tuple[str, ...], fallback_reason: MicrostateError) -> None:
        shown = ", ".join(repr(key) for key in keys[:3]) + (f" and {len(keys) - 3} more" if keys[3:] else "")
        super().__init__(
            f"no snapshot of {shown} to serve after {fallback_reason}", reason="NO_SNAPSHOT", domain=DOMAIN
        )
        self.keys = keys
        self.fallback_reason = fallback_reason
        self.code = fallback_reason.code


# The one status → class table; the order is that of grpc.StatusCode.
_CLASS_BY_CODE: Mapping[grpc.StatusCode, type[MicrostateError]] = MappingProxyType(
    {
        grpc.StatusCode.CANCELLED: Cancelled,
        grpc.StatusCode.UNKNOWN: Unknown,
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
        grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
        grpc.StatusCode.ABORTED: Aborted,
        grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
        grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
        grpc.StatusCode.INTERNAL: Internal,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.DATA_LOSS: DataLoss,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    }
)


# Reasons (of DOMAIN) whose errors get a subclass of their status's class.
_CLASS_BY_REASON: Mapping[str, type[MicrostateError]] = MappingProxyType(
    {ContractVersionNotServed.REASON: ContractVersionNotServed, ResponseTooLarge.REASON: ResponseTooLarge}
)


def exception_class_for(code: grpc.StatusCode) -> type[MicrostateError]:
    """The class raised for `code`; `Unknown` for OK or a code gRPC may add later."""
    return _CLASS_BY_CODE.get(code, Unknown)


def from_grpc_error(err: grpc.RpcError) -> MicrostateError:
    """Translate a grpc (sync or aio) error into its typed `MicrostateError`, rich details unpacked.

    Use as `raise from_grpc_error(err) from err`. Malformed or mismatching details never hide the
    error itself: the code and message still come through.
    """
    # Sync errors are grpc.Call objects; grpc.aio.AioRpcError is not, but has the same accessors.
    if not isinstance(err, grpc.Call | grpc.aio.AioRpcError):  # e.g. a bare RpcError from an interceptor
        return Unknown(str(err) or type(err).__name__)
    code, message = err.code(), err.details() or ""
    status = _rich_status(err)
    return _with_details(exception_class_for(code), message, status)


def _rich_status(call: grpc.Call | grpc.aio.AioRpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except (ValueError, DecodeError):  # details that contradict the status or do not parse: ignore them
        return None
    return status


def _with_details(
    error_class: type[MicrostateError], message: str, status: status_pb2.Status | None
) -> MicrostateError:
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    precondition = error_details_pb2.PreconditionFailure()
    retry = error_details_pb2.RetryInfo()
    retry_delay: float | None = None
    for detail in status.details if status is not None else ():
        # Each Unpack fills its message only when the Any holds that type, so order does not matter.
        unpacked = detail.Unpack(info) or detail.Unpack(bad_request) or detail.Unpack(precondition)
        if not unpacked and detail.Unpack(retry):
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    refined = _CLASS_BY_REASON.get(info.reason) if info.domain == DOMAIN else None
    if refined is not None and refined.code is error_class.code:
        error_class = refined
    return error_class(
        message,
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
        field_violations=tuple(FieldViolation(v.field, v.description) for v in bad_request.field_violations),
        precondition_violations=tuple(
            PreconditionViolation(v.type, v.subject, v.description) for v in precondition.violations
        ),
        retry_delay=retry_delay,
        status=status,
    )


__all__ = [
    "DOMAIN",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "CircuitOpenError",
    "ContractVersionNotServed",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "LatencyBudgetExceeded",
    "MicrostateError",
    "NoSnapshotError",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "PreconditionViolation",
    "ResourceExhausted",
    "ResponseTooLarge",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "exception_class_for",
    "from_grpc_error",
]
