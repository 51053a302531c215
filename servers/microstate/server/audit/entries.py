"""What one audit entry says, in the canonical bytes every verifier hashes, and the pseudonymous subject
reference it carries.

An entry never holds a value, only the sha256 digests of the value before and after the change, and never
a subject id, only `subject_ref(subject_id)`: a keyed hash, so erasing a subject (deleting its data and,
to unlink old entries, the subject key) needs no ledger rewrite, and the ledger holds no personal data.

Encoding: a version byte, then each field as a 4-byte big-endian length and its UTF-8 bytes, in the order
of `Entry`'s fields (not JSON: every language hashes the same bytes, no key order or escaping to agree on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

FORMAT: Final = 1
"""The encoding version, the first byte of every encoded entry."""
_FORMAT_BYTE: Final = bytes([FORMAT])
ABSENT_DIGEST: Final = ""
"""The digest field of a value that does not exist (before a create, after a delete)."""
UNKNOWN_DIGEST: Final = "?"
"""The before digest of an unconditional write whose previous value the writer did not read."""


def subject_ref(subject_id: str, key: bytes) -> str:
    """The pseudonymous reference to a data subject: HMAC-SHA256 of the id under the server's subject key,
    hex. The same subject always gets the same reference (a GDPR request can find its entries); without
    the key the id cannot be recovered or guessed by hashing candidate ids. "" for no subject."""
    if not subject_id:
        return ""
    return hmac.new(key, subject_id.encode(), hashlib.sha256).hexdigest()


def digest(value: bytes | None) -> str:
    """The sha256 of a stored value, hex; ABSENT_DIGEST for none."""
    return ABSENT_DIGEST if value is None else hashlib.sha256(value).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One state change, as written atomically with it."""

    time_ns: int
    """Server time of the write (Unix nanoseconds)."""
    principal: str
    """Who asked: "token:<sub>@<iss>", "certificate:<name>", "anonymous" or a system actor."""
    method: str
    """The RPC, "/microstate.profile.v2.ProfileService/UpdateProfile", or a coordinator's step name."""
    contract: str
    """The contract version that processed the request: the proto package, "microstate.profile.v2"."""
    resource: str
    """The store key written, as the microstate names it ("u1", "idx/u1/s1")."""
    operation: str
    """"put" or "delete"."""
    before: str
    """sha256 of the value before (hex), ABSENT_DIGEST if there was none, UNKNOWN_DIGEST if not read."""
    after: str
    """sha256 of the value after (hex), ABSENT_DIGEST after a delete."""
    request_id: str
    status: str
    """"OK" for a committed write; a coordinator's own steps may say "STARTED", "FAILED", "DONE"."""
    subject: str
    """subject_ref() of the data subject the change concerns, "" if none."""

    def encode(self) -> bytes:
        return encode_fields([str(getattr(self, name)) for name in self.__slots__])

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        fields = [field.decode() for field in decode_fields(data)]
        names = [f.name for f in dataclasses.fields(cls)]
        if len(fields) != len(names):
            raise ValueError(f"an audit entry has {len(names)} fields, not {len(fields)}")
        values: dict[str, object] = dict(zip(names, fields, strict=True))
        values["time_ns"] = int(fields[0])
        return cls(**values)  # type: ignore[arg-type]


def encode_fields(fields: Sequence[str | bytes]) -> bytes:
    """Each field as a 4-byte big-endian length and its bytes (text as UTF-8), after the FORMAT byte."""
    parts = [_FORMAT_BYTE]
    for field in fields:
        raw = field.encode() if isinstance(field, str) else field
        parts += (len(raw).to_bytes(4, "big"), raw)
    return b"".join(parts)


def decode_fields(data: bytes) -> list[bytes]:
    """The fields of `encode_fields`, as bytes; ValueError for anything else."""
    if not data or data[0] != FORMAT:
        raise ValueError("not an audit record of format 1")
    fields: list[bytes] = []
    at = 1
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError("truncated audit record")
        (length,) = struct.unpack_from(">I", data, at)
        at += 4
        if at + length > len(data):
            raise ValueError("truncated audit record")
        fields.append(data[at : at + length])
        at += length
    return fields
