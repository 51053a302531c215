"""The stored, version-agnostic representation of a user profile.

Every contract version (v1, v2) reads and writes this one shape, so
a write through one version is readable through the others. It is stored as
compact JSON; the embedding is packed as little-endian float32 (what the
contracts carry), base64-encoded, which keeps a 4,096-value embedding at 22 KiB
and fast to decode.
"""

from __future__ import annotations

import array
import base64
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from microstate.server.store.base import Record

_LITTLE_ENDIAN = sys.byteorder == "little"


def pack_floats(values: array.array[float]) -> str:
    if not _LITTLE_ENDIAN:  # pragma: no cover - every supported platform is little-endian
        values = array.array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def unpack_floats(text: str) -> array.array[float]:
    values = array.array("f")
    values.frombytes(base64.b64decode(text))
    if not _LITTLE_ENDIAN:  # pragma: no cover
        values.byteswap()
    return values


@dataclass(frozen=True, slots=True)
class Consent:
    purpose: str
    granted: bool
    decide_time_ns: int


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

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "u": self.user_id,
            "d": self.display_name,
            "l": self.locale,
            "a": dict(self.attributes),
            "e": pack_floats(self.embedding),
            "c": self.create_time_ns,
            "m": self.update_time_ns,
            "w": self.written_by,
            "gn": self.given_name,
            "fn": self.family_name,
            "cs": [[c.purpose, c.granted, c.decide_time_ns] for c in self.consents],
            "em": self.embedding_model,
            "ev": self.embedding_model_version,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ProfileData:
        doc = json.loads(raw)
        return cls(
            user_id=doc["u"],
            display_name=doc.get("d", ""),
            locale=doc.get("l", ""),
            attributes=doc.get("a", {}),
            embedding=unpack_floats(doc.get("e", "")),
            create_time_ns=doc.get("c", 0),
            update_time_ns=doc.get("m", 0),
            written_by=doc.get("w", ""),
            given_name=doc.get("gn", ""),
            family_name=doc.get("fn", ""),
            consents=tuple(Consent(p, g, t) for p, g, t in doc.get("cs", ())),
            embedding_model=doc.get("em", ""),
            embedding_model_version=doc.get("ev", ""),
        )


@dataclass(frozen=True, slots=True)
class StoredProfile:
    data: ProfileData
    revision: int

    @property
    def etag(self) -> str:
        return etag_of(self.revision)

    @classmethod
    def from_record(cls, record: Record) -> StoredProfile:
        return cls(ProfileData.from_bytes(record.value), record.revision)


def etag_of(revision: int) -> str:
    # Weak-etag-like and opaque: clients compare, never parse.
    return f'W/"{revision}"'
