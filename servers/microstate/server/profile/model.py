"""The stored, version-agnostic representation of a user profile.

Every contract version (v1, v2) reads and writes this one shape, so a write
through one version is readable through the others. It is stored as a
`microstate.profile.storage.v1.ProfileRecord` protobuf (proto/), which is
compact, fast to decode, and kept readable forever by `buf breaking`.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from microstate.profile.storage.v1.record_pb2 import ConsentRecord, ProfileRecord, WrittenBy
from microstate.server.kit import records
from microstate.server.kit.idempotency import AppliedRequest
from microstate.server.kit.resources import Kind, Stored
from microstate.server.wellknown import timestamp

_LITTLE_ENDIAN = sys.byteorder == "little"


def pack_floats(values: array.array[float]) -> bytes:
    if not _LITTLE_ENDIAN:  # pragma: no cover - every supported platform is little-endian
        values = array.array("f", values)
        values.byteswap()
    return values.tobytes()


def unpack_floats(raw: bytes) -> array.array[float]:
    values = array.array("f")
    values.frombytes(raw)
    if not _LITTLE_ENDIAN:  # pragma: no cover
        values.byteswap()
    return values


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

WRITTEN_BY_CODES: dict[str, WrittenBy] = {
    "microstate.profile.v1": WrittenBy.WRITTEN_BY_PROFILE_V1,
    "microstate.profile.v2": WrittenBy.WRITTEN_BY_PROFILE_V2,
}
"""Schema version 2 stores these contract names as codes (profile/migrations.py)."""
WRITTEN_BY_NAMES: dict[int, str] = {code: name for name, code in WRITTEN_BY_CODES.items()}


@dataclass(frozen=True, slots=True)
class Consent:
    purpose: str
    granted: bool
    decide_time_ns: int
    """Any Timestamp's time (0001 to 9999), so it may not fit in int64."""

    def to_record(self) -> ConsentRecord:
        ns = self.decide_time_ns
        if _INT64_MIN <= ns <= _INT64_MAX:
            return ConsentRecord(purpose=self.purpose, granted=self.granted, decide_time_ns=ns)
        # Exact in decide_time; clamped in decide_time_ns for servers that predate decide_time.
        return ConsentRecord(
            purpose=self.purpose,
            granted=self.granted,
            decide_time_ns=min(max(ns, _INT64_MIN), _INT64_MAX),
            decide_time=timestamp(ns),
        )

    @classmethod
    def from_record(cls, record: ConsentRecord) -> Consent:
        if record.HasField("decide_time"):
            return cls(record.purpose, record.granted, record.decide_time.ToNanoseconds())
        return cls(record.purpose, record.granted, record.decide_time_ns)


@dataclass(frozen=True, slots=True)
class ProfileData:
    """A profile's content, as stored. Times are Unix nanoseconds."""

    user_id: str
    display_name: str = ""
    locale: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    embedding: array.array[float] = field(default_factory=lambda: array.array("f"))
    create_time_ns: int = 0
    update_time_ns: int = 0
    written_by: str = ""
    """The contract version (e.g. microstate.profile.v1) that handled the last write."""
    given_name: str = ""
    family_name: str = ""
    consents: tuple[Consent, ...] = ()
    embedding_model: str = ""
    embedding_model_version: str = ""
    applied_requests: tuple[AppliedRequest, ...] = ()
    """The recent writes with a request_id applied to it (kit/idempotency.py); never shown to clients."""

    def to_bytes(self) -> bytes:
        """The record at the newest schema version (2: a known written_by as a code)."""
        code = WRITTEN_BY_CODES.get(self.written_by, WrittenBy.WRITTEN_BY_UNSPECIFIED)
        return records.to_message(
            self,
            ProfileRecord,
            embedding_f32le=pack_floats(self.embedding),
            consents=[c.to_record() for c in self.consents],
            applied_requests=[r.to_record() for r in self.applied_requests],
            written_by="" if code else self.written_by,
            written_by_code=code,
        ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProfileData:
        record = ProfileRecord.FromString(raw)
        return records.from_message(
            record,
            cls,
            embedding=unpack_floats(record.embedding_f32le),
            consents=tuple(map(Consent.from_record, record.consents)),
            applied_requests=tuple(map(AppliedRequest.from_record, record.applied_requests)),
            written_by=record.written_by or WRITTEN_BY_NAMES.get(record.written_by_code, ""),
        )


PROFILE: Kind[ProfileData] = Kind(
    "profile",
    "user_id",
    ProfileData.to_bytes,
    ProfileData.from_bytes,
    requests=lambda data: data.applied_requests,
    with_requests=lambda data, applied: replace(data, applied_requests=applied),
)
"""Profiles as the kit's keyed resources: errors say "profile", reasons PROFILE_*, keys are user ids."""

StoredProfile = Stored[ProfileData]
