"""Domain errors and their one mapping to rich gRPC statuses (AIP-193).

Domain code raises these; servicer adapters never build statuses by hand. Each
becomes a google.rpc.Status with one ErrorInfo (domain microstate.dev, an
UPPER_SNAKE reason) plus BadRequest / PreconditionFailure / RetryInfo where
they apply.

Errors may echo client input (an etag, an update_mask path) of any length, and a
status travels as trailing metadata, which clients cap (8 KiB by default; past
it they see RESOURCE_EXHAUSTED "Stream removed" instead of the error). So
to_status bounds every string it sends, whatever the domain code put in it.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from microstate.server.store.base import StoreUnavailable

DOMAIN = "microstate.dev"
MAX_STRING_BYTES = 512
"""The most UTF-8 bytes any one string of a status (its message, a metadata value, a violation) may take."""
MAX_STATUS_BYTES = 2048
"""The most the serialized google.rpc.Status may take; it goes out base64 in grpc-status-details-bin, and its
message once more in grpc-message (percent-encoded), together well under the 8 KiB metadata limit."""
_ELLIPSIS = "…"
log = logging.getLogger(__name__)


def bounded(text: str, limit: int = MAX_STRING_BYTES) -> str:
    """`text`, or if it takes more than `limit` UTF-8 bytes its start and its end around an ellipsis: an echo
    sits inside a message whose end often says what to do."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    half = (limit - len(_ELLIPSIS.encode())) // 2
    # "ignore" drops a character cut in two at either edge.
    return encoded[:half].decode("utf-8", "ignore") + _ELLIPSIS + encoded[-half:].decode("utf-8", "ignore")


def _bound_strings(message: Message) -> None:
    """Bound every string in `message`, at any depth (map values included; map keys are the server's own)."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [bounded(item) for item in value]
            else:
                setattr(message, field.name, bounded(value))
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                for key in value:
                    if isinstance(value[key], str):
                        value[key] = bounded(value[key])
                    else:
                        _bound_strings(value[key])
            else:
                for item in value if field.is_repeated else [value]:
                    _bound_strings(item)


def _packed(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})

    def details(self) -> list[Message]:
        return []

    def to_status(self) -> grpc.Status:
        """The rich status, every string bounded (MAX_STRING_BYTES) and the whole too (MAX_STATUS_BYTES)."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        details = [info, *self.details()]
        for detail in details:
            _bound_strings(detail)
        proto = status_pb2.Status(
            code=self.code.value[0], message=bounded(self.message), details=[_packed(d) for d in details]
        )
        # Only many strings, each bounded, get past MAX_STATUS_BYTES (a long list of violations, say): shed
        # detail until it fits (the last field violations first), ErrorInfo's reason last.
        _shed_violations(proto, details)
        if proto.ByteSize() > MAX_STATUS_BYTES:
            del proto.details[1:]
        if proto.ByteSize() > MAX_STATUS_BYTES:
            info.metadata.clear()
            proto.details[0].Pack(info)
        return rpc_status.to_status(proto)


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str, *, reason: str | None = None) -> None:
        super().__init__(f"{field}: {description}", reason=reason)
        self.violations = [(field, description)]

    @classmethod
    def of(cls, violations: Sequence[tuple[str, str]], *, reason: str | None = None) -> InvalidArgument:
        """One error naming every bad field: a BadRequest with one violation per (field, description), in
        order (the status sheds the last ones if they do not all fit). `violations` must not be empty."""
        error = cls(*violations[0], reason=reason)
        error.violations = list(violations)
        if len(violations) > 1:
            error.message = f"{len(violations)} invalid fields; {error.message}"
        return error

    def details(self) -> list[Message]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
        ]


def _shed_violations(proto: status_pb2.Status, details: list[Message]) -> None:
    """Drop field violations from the end of a BadRequest detail until the status fits (keeping one)."""
    for index, detail in enumerate(details):
        if not isinstance(detail, error_details_pb2.BadRequest):
            continue
        while proto.ByteSize() > MAX_STATUS_BYTES and len(detail.field_violations) > 1:
            del detail.field_violations[len(detail.field_violations) // 2 :]
            proto.details[index].Pack(detail)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class EtagMismatch(DomainError):
    """AIP-154: a stale etag is ABORTED, with a PreconditionFailure naming the resource."""

    code = grpc.StatusCode.ABORTED
    reason = "ETAG_MISMATCH"

    def __init__(self, subject: str, sent: str, current: str) -> None:
        super().__init__(
            f"etag {sent!r} does not match the current etag of {subject}; re-read and retry",
            metadata={"current_etag": current},
        )
        self.subject = subject

    def details(self) -> list[Message]:
        violation = error_details_pb2.PreconditionFailure.Violation(
            type="ETAG", subject=self.subject, description="the etag does not match the stored etag"
        )
        return [error_details_pb2.PreconditionFailure(violations=[violation])]


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(DomainError):
    """A position past the end of what exists (a read offset beyond a blob's size)."""

    code = grpc.StatusCode.OUT_OF_RANGE
    reason = "OUT_OF_RANGE"


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"
    retry_after_seconds = 1.0

    def details(self) -> list[Message]:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(datetime.timedelta(seconds=self.retry_after_seconds))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


def status_for(exc: BaseException) -> grpc.Status:
    """The rich status for any exception escaping a servicer: domain errors as declared, the rest INTERNAL."""
    if isinstance(exc, DomainError):
        return exc.to_status()
    if isinstance(exc, StoreUnavailable):
        return Unavailable(f"the store is unavailable: {exc}").to_status()
    log.exception("unexpected error in servicer", exc_info=exc)
    return DomainError("internal error").to_status()


_Unary = TypeVar("_Unary", bound=Callable[..., Awaitable[Any]])
_Stream = TypeVar("_Stream", bound=Callable[..., AsyncIterator[Any]])


def unary_errors(method: _Unary) -> _Unary:
    """Turn domain and store errors from a unary servicer method into rich statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:  # status_for tells domain errors from unexpected ones
            await context.abort_with_status(status_for(exc))

    return wrapper  # type: ignore[return-value]


def stream_errors(method: _Stream) -> _Stream:
    """The same for server-streaming methods."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:  # status_for tells domain errors from unexpected ones
            await context.abort_with_status(status_for(exc))

    return wrapper  # type: ignore[return-value]


__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "DomainError",
    "EtagMismatch",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "Unavailable",
    "status_for",
    "stream_errors",
    "unary_errors",
]
