"""Writes that apply once however often they are sent: AIP-155 request ids, kept in the resource itself.

A write that carries a request_id records it, with a digest of the request, in the record it writes, in the
same atomic put; so no crash can separate the write from its memory of the id. A retry (the same id) finds it
there and is answered with the resource as it is, without being applied again; the same id with another
request is ALREADY_EXISTS (REQUEST_ID_ALREADY_USED). A record keeps its last KEEP ids for at most RETAIN_NS,
which bounds what it costs and is far longer than any client retries.

A delete cannot leave its id behind (the record is gone); with a request_id, deleting what does not exist
succeeds instead (see Resources.delete).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from microstate.kit.storage.v1.applied_pb2 import AppliedRequest as AppliedRequestRecord
from microstate.server.errors import AlreadyExists, InvalidArgument

REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
KEEP = 16
RETAIN_NS = 10 * 60 * 10**9


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A write's request_id and the digest of what it asks for."""

    request_id: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class AppliedRequest:
    request_id: str
    request_digest: bytes
    apply_time_ns: int

    def to_record(self) -> AppliedRequestRecord:
        return AppliedRequestRecord(
            request_id=self.request_id, request_digest=self.request_digest, apply_time_ns=self.apply_time_ns
        )

    @classmethod
    def from_record(cls, record: AppliedRequestRecord) -> AppliedRequest:
        return cls(record.request_id, record.request_digest, record.apply_time_ns)


def write_request(request: Message, field: str = "request_id") -> WriteRequest | None:
    """The request's id and digest (of the request without its id); None when it carries no id."""
    request_id: str = getattr(request, field)
    if not request_id:
        return None
    if not REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(field, "1 to 128 printable ASCII characters, no spaces")
    anonymous = type(request)()
    anonymous.CopyFrom(request)
    anonymous.ClearField(field)
    digest = hashlib.sha256(anonymous.SerializeToString(deterministic=True)).digest()[:16]
    return WriteRequest(request_id, digest)


def was_applied(history: Sequence[AppliedRequest], request: WriteRequest) -> bool:
    """Whether `request` is among those applied; ALREADY_EXISTS if its id was used for another request."""
    for applied in history:
        if applied.request_id == request.request_id:
            if applied.request_digest != request.digest:
                raise AlreadyExists(
                    "request_id was already used for a different request",
                    reason="REQUEST_ID_ALREADY_USED",
                    metadata={"request_id": request.request_id},
                )
            return True
    return False


def remembered(
    history: Sequence[AppliedRequest], request: WriteRequest, now_ns: int
) -> tuple[AppliedRequest, ...]:
    """`history` with `request` added, and the ids past their retention or beyond the last KEEP dropped."""
    recent = [applied for applied in history if now_ns - applied.apply_time_ns < RETAIN_NS]
    return (*recent[-(KEEP - 1) :], AppliedRequest(request.request_id, request.digest, now_ns))
