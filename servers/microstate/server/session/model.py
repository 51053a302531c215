"""What the session microstate stores, and under which keys (one store namespace, three kinds of record).

- `<session_id>`: a session (`SessionData`), living until its expiry (a store TTL, renewed by refreshes).
- `m/<user tag>`: the revoked-before marks (`Marks`) of the users with that tag, living as long as a session
  they cover can; written by RevokeUserSessions, read with the session on every validation.
- `u/<user_id>/<session_id>`: the user's session index, an empty value living until the session's max
  expiry; ListUserSessions reads it and removes the entries of sessions that ended.

Encoded as the `microstate.session.storage.v1` records (proto/), kept readable forever by `buf breaking`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from microstate.server.kit import records
from microstate.server.kit.resources import Kind, Stored
from microstate.session.storage.v1.record_pb2 import MarkRecord, MarksRecord, RotationRecord, SessionRecord

TAG_CHARS = 16
MARKS_PREFIX = "m/"
INDEX_PREFIX = "u/"


def user_tag(user_id: str) -> str:
    """16 hex characters derived from the user id: the first half of each of the user's session ids, so a
    session id names where its user's revocation marks live and one batch read fetches both. A plain hash,
    not keyed: it must survive a change of server key, and it tells nothing a token holder cannot ask."""
    return hashlib.sha256(b"microstate.session user\0" + user_id.encode()).hexdigest()[:TAG_CHARS]


def marks_key(session_id_or_tag: str) -> str:
    return MARKS_PREFIX + session_id_or_tag[:TAG_CHARS]


def index_prefix(user_id: str) -> str:
    return f"{INDEX_PREFIX}{user_id}/"


def is_session_key(key: str) -> bool:
    return "/" not in key


class RevokeReason(enum.IntEnum):
    """microstate.session.v1.RevokeReason, by number."""

    UNSPECIFIED = 0
    REVOKED = 1
    USER_REVOKED = 2
    REFRESH_TOKEN_REUSED = 3
    ERASED = 4


@dataclass(frozen=True, slots=True)
class Rotation:
    """The credentials the last refresh replaced (see RotationRecord)."""

    token_digest: bytes
    refresh_digest: bytes
    rotate_time_ns: int
    sealed_successor: bytes


@dataclass(frozen=True, slots=True)
class SessionData:
    """A session as stored. Times and durations are nanoseconds."""

    session_id: str
    user_id: str
    scopes: tuple[str, ...]
    attributes: Mapping[str, str]
    create_time_ns: int
    refresh_time_ns: int
    idle_ttl_ns: int
    max_ttl_ns: int
    key_id: bytes
    token_digest: bytes
    refresh_digest: bytes
    generation: int = 0
    previous: Rotation | None = None
    spent_refresh_digests: tuple[bytes, ...] = ()
    revoke_time_ns: int = 0
    revoke_reason: RevokeReason = RevokeReason.UNSPECIFIED
    request_digest: bytes = b""
    sealed_first_secrets: bytes = b""

    @property
    def max_expire_time_ns(self) -> int:
        return self.create_time_ns + self.max_ttl_ns

    @property
    def expire_time_ns(self) -> int:
        return min(self.refresh_time_ns + self.idle_ttl_ns, self.max_expire_time_ns)

    def revoked(self, when_ns: int, reason: RevokeReason) -> SessionData:
        """This session revoked; the copy of its first tokens goes (it could only serve a retried create)."""
        return replace(self, revoke_time_ns=when_ns, revoke_reason=reason, sealed_first_secrets=b"")

    def to_bytes(self) -> bytes:
        previous = None if self.previous is None else records.to_message(self.previous, RotationRecord)
        return records.to_message(self, SessionRecord, previous=previous).SerializeToString(
            deterministic=True
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> SessionData:
        record = SessionRecord.FromString(raw)
        previous = records.from_message(record.previous, Rotation) if record.HasField("previous") else None
        return records.from_message(
            record, cls, previous=previous, revoke_reason=RevokeReason(record.revoke_reason)
        )


@dataclass(frozen=True, slots=True)
class Mark:
    """A user's revoked-before mark: their sessions created at or before it are revoked, but one."""

    revoked_before_ns: int
    except_session_id: str = ""

    def covers(self, session: SessionData) -> bool:
        return (
            session.create_time_ns <= self.revoked_before_ns and session.session_id != self.except_session_id
        )


@dataclass(frozen=True, slots=True)
class Marks:
    """The marks under one user tag, by user id (one user, unless two ids share a tag)."""

    by_user: Mapping[str, Mark] = field(default_factory=dict)
    last_user_id: str = ""

    def to_bytes(self) -> bytes:
        return MarksRecord(
            marks={
                user: MarkRecord(
                    revoked_before_ns=mark.revoked_before_ns, except_session_id=mark.except_session_id
                )
                for user, mark in self.by_user.items()
            },
            last_user_id=self.last_user_id,
        ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Marks:
        record = MarksRecord.FromString(raw)
        return cls(
            {user: Mark(m.revoked_before_ns, m.except_session_id) for user, m in record.marks.items()},
            record.last_user_id,
        )


SESSION: Kind[SessionData] = Kind("session", "session_id", SessionData.to_bytes, SessionData.from_bytes)
"""Sessions as the kit's keyed resources: errors say "session", reasons SESSION_*, keys are session ids."""
MARKS: Kind[Marks] = Kind("revocation mark", "user_id", Marks.to_bytes, Marks.from_bytes)

StoredSession = Stored[SessionData]
