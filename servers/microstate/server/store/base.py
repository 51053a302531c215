"""The store protocol: one async interface every backend implements.

A store holds one namespace (one microstate) of opaque byte values under string
keys. Every successful write gets a new `revision`, an integer that increases
strictly within the namespace; callers build etags from it. Every write also
appends to a change log in the same atomic step, so `watch` can resume from any
retained cursor without gaps or duplicates.

Backends raise only the exceptions defined here, so the domain layer maps them
to gRPC statuses once, whatever the backend.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, runtime_checkable


class _Absent(enum.Enum):
    ABSENT = "absent"


ABSENT: Final = _Absent.ABSENT
"""`if_match=ABSENT`: the write succeeds only if the key does not exist (create)."""

IfMatch = int | _Absent | None
"""None: unconditional. ABSENT: must not exist. An int: the current revision must equal it."""

NAMESPACE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""A namespace every backend can hold as it is: in an SQLite table name, a MongoDB collection name and a
Redis hash tag (no quoting surprises, no `{`, `}`, `$` or `:`)."""


class Record(NamedTuple):
    """One stored record. A NamedTuple, not a frozen dataclass: stores build one per key read, and a
    frozen dataclass costs three times as much to build (~1.2 µs against ~0.4 µs)."""

    key: str
    value: bytes
    revision: int
    """Revision of the last write; strictly increasing across the namespace."""
    expires_at: float | None = None
    """Unix time after which the record reads as absent; None never expires."""


class ChangeKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    key: str
    record: Record | None
    """The record after the change; None for DELETED."""
    cursor: str
    """Opaque position in the change log; pass to `watch(after=...)` to continue after this change."""
    commit_time: float
    """Unix time the change was committed."""


@dataclass(frozen=True, slots=True)
class Page:
    records: list[Record]
    next_after: str | None
    """The last key of this page, to pass as `after`; None when this was the last page."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees beyond the protocol, so callers and tests can adapt."""

    durable: bool
    """Acknowledged writes survive a process crash."""
    shared: bool
    """Several server processes may use the same store at once."""
    native_ttl: bool
    """The backend also evicts expired records by itself (reads always enforce TTL)."""


class StoreError(Exception):
    """Base of every error a store raises."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached or did not answer in time; safe to retry."""


class StoreMisconfigured(StoreUnavailable):
    """The backend answers but refuses this store as configured: wrong or missing credentials, a database
    it does not have, no transactions, a file that cannot be opened. Retrying cannot help until someone
    fixes the configuration, so a server refuses to start on it; a call that meets it later (a password
    rotated under a running server) still fails as unavailable, which is what it is to the caller."""


class PreconditionFailed(StoreError):
    """`if_match` did not hold. `current` is the record as it is now (None if absent)."""

    def __init__(self, key: str, current: Record | None) -> None:
        super().__init__(f"precondition failed for {key!r}")
        self.key = key
        self.current = current


class CursorExpired(StoreError):
    """The watch cursor is older than the retained change log."""


class InvalidCursor(StoreError):
    """The watch cursor is malformed or belongs to another store."""


def cursor_of(revision: int) -> str:
    """The watch cursor of the change that wrote `revision`. Every backend's cursor is the revision as a
    decimal string (its change log is keyed by revision), so a caller that hands out revisions (a rule set
    revision, say) can resume a watch from one; revision 0 is the cursor of an empty store's head."""
    return str(revision)


def revision_of(cursor: str) -> int:
    """The revision a cursor of this store stands for (see `cursor_of`); InvalidCursor if it is not one."""
    if not cursor.isascii() or not cursor.isdigit():
        raise InvalidCursor(f"not a store cursor: {cursor!r}")
    return int(cursor)


def check_namespace(namespace: str) -> None:
    """Raise ValueError unless `namespace` matches NAMESPACE."""
    if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"bad namespace {namespace!r}: 1 to 100 letters, digits, '_', '.' or '-',"
            " the first a letter or digit"
        )


def require_precondition(key: str, if_match: IfMatch, current: Record | None) -> None:
    """Raise PreconditionFailed unless a write with `if_match` may go ahead over `current`, the live record
    (None if absent or expired); TypeError for an `if_match` that is not an IfMatch.

    The one definition of `if_match`: backends that check it atomically inside the store (a Lua script, a
    filtered update) restate exactly this rule.
    """
    if if_match is None:
        return
    if if_match is ABSENT:
        if current is not None:
            raise PreconditionFailed(key, current)
        return
    expected = expected_revision(if_match)
    if current is None or current.revision != expected:
        raise PreconditionFailed(key, current)


def expected_revision(if_match: int) -> int:
    """The revision an int `if_match` names; TypeError for anything else (a bool or a string would mean
    different things to different backends)."""
    if not isinstance(if_match, int) or isinstance(if_match, bool):
        raise TypeError(f"if_match must be None, ABSENT or a revision (an int), not {if_match!r}")
    return if_match


@runtime_checkable
class Store(Protocol):
    capabilities: Capabilities

    async def get(self, key: str) -> Record | None:
        """The live record, or None if absent or expired."""
        ...

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        """Live records for the keys that exist, in one round trip where the backend allows."""
        ...

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: IfMatch = None,
        ttl: float | None = None,
        audit: bytes | None = None,
    ) -> Record:
        """Write atomically if `if_match` holds (an expired record counts as absent).

        With `audit`, the bytes are appended to the namespace's audit journal under the write's revision in
        the same atomic step (audit/audited.py): both are written or neither.
        Raises PreconditionFailed; ValueError for ttl <= 0."""
        ...

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        """Delete if `if_match` holds; True if a live record was deleted, False if it was absent (nothing is
        written then, not even `audit`, which is journaled as in `put`)."""
        ...

    async def audit_journal(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(revision, audit bytes) of the journaled writes after revision `after`, in revision order, at most
        `limit`. The journal is never trimmed by change-log retention."""
        ...

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        """Live records with `prefix`, in key order, strictly after key `after`; ValueError for limit < 1."""
        ...

    def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncGenerator[Change, None]:
        """Changes in commit order, strictly after cursor `after`. Never ends by itself; `aclose()` it.

        `after=None` means the head at the *first iteration*, not at the call: callers that must not miss
        a write made in between pass `await head_cursor()`. A malformed cursor, or one ahead of the log,
        raises InvalidCursor (Redis reports a cursor ahead of its log as CursorExpired: its data was lost);
        one older than the retained log raises CursorExpired."""
        ...

    async def head_cursor(self) -> str:
        """The cursor of the latest committed change (what `watch(after=None)` starts after)."""
        ...

    async def ping(self) -> None:
        """Return if the backend answers and accepts this store; raise StoreUnavailable otherwise, and
        its subclass StoreMisconfigured if the backend refuses the configuration rather than being out of
        reach."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...
