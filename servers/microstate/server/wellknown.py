"""google.protobuf well-known types a client sends, checked and converted; shared by every microstate.

protobuf's own conversions raise a bare ValueError on a value outside the type's documented range, which a
servicer would answer as INTERNAL. These say INVALID_ARGUMENT with a BadRequest field violation naming the
caller's field instead, before anything is written.
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from microstate.server.errors import InvalidArgument

NANOS_PER_SECOND = 1_000_000_000
MIN_TIMESTAMP_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest valid Timestamp."""
MAX_TIMESTAMP_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest valid Timestamp (with nanos up to 999,999,999)."""
TIMESTAMP_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z"


def timestamp_ns(stamp: timestamp_pb2.Timestamp, field: str) -> int:
    """`stamp` as Unix nanoseconds, once it is a valid Timestamp; `field` is the caller's path to it."""
    if not MIN_TIMESTAMP_SECONDS <= stamp.seconds <= MAX_TIMESTAMP_SECONDS:
        raise InvalidArgument(
            field, f"seconds {stamp.seconds} is outside {TIMESTAMP_RANGE}", reason="INVALID_TIMESTAMP"
        )
    if not 0 <= stamp.nanos < NANOS_PER_SECOND:
        raise InvalidArgument(
            field, f"nanos {stamp.nanos} is outside 0 to 999,999,999", reason="INVALID_TIMESTAMP"
        )
    return stamp.seconds * NANOS_PER_SECOND + stamp.nanos


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """The Timestamp of Unix nanoseconds `ns` (any time timestamp_ns accepted)."""
    seconds, nanos = divmod(ns, NANOS_PER_SECOND)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
