"""The schema versions of stored profiles (kit/migrations.py).

Version 1: a ProfileRecord with `written_by`, the full name of the contract version that wrote last
("microstate.profile.v1", 21 bytes in every profile). Version 2: that name as a WrittenBy code in
`written_by_code` (2 bytes), `written_by` empty; a name WrittenBy does not list stays in `written_by`.
Both steps parse and re-serialise deterministically, as ProfileData.to_bytes does, so `down(up(r)) == r`
byte for byte for every record the slice wrote, and a record a step has nothing to change in is returned
as it is.
"""

from __future__ import annotations

from microstate.profile.storage.v1.record_pb2 import ProfileRecord, WrittenBy
from microstate.server.kit.migrations import Migration, Schema
from microstate.server.profile.model import WRITTEN_BY_CODES, WRITTEN_BY_NAMES


def written_by_as_code(payload: bytes) -> bytes:
    record = ProfileRecord.FromString(payload)
    code = WRITTEN_BY_CODES.get(record.written_by)
    if code is None:
        return payload
    record.written_by = ""
    record.written_by_code = code
    return record.SerializeToString(deterministic=True)


def written_by_as_name(payload: bytes) -> bytes:
    record = ProfileRecord.FromString(payload)
    name = WRITTEN_BY_NAMES.get(record.written_by_code)
    if name is None:  # no code (or one this version does not know): nothing version 1 can say better
        return payload
    record.written_by = name
    record.written_by_code = WrittenBy.WRITTEN_BY_UNSPECIFIED
    return record.SerializeToString(deterministic=True)


SCHEMA = Schema(
    (
        Migration(
            2,
            "written_by as a WrittenBy code instead of the contract's name",
            up=written_by_as_code,
            down=written_by_as_name,
            reads_older=True,  # ProfileData.from_bytes reads written_by from either field
        ),
    )
)
