"""The legacy adapter protocol: one slice of the monolith behind the slice's own domain interface.

A slice being extracted has two homes for the same records: the monolith's store (a SQL table, a Redis hash
layout, ...) and the microstate. `LegacyAdapter` puts the monolith's side behind the operations the slice's
domain has — get, put and delete one record by key, each write carrying a request id, and an ordered scan of
a key range — in the slice's own message type, so the `Router` (router.py), the backfill and reconciliation
can send one call to either side.

Adapters also keep the extraction's **outbox** in the monolith's store (`OutboxStore`): a write the Router
makes to legacy during dual writes appends its outbox entry in the same transaction as the row (the
transactional-outbox pattern), so an acknowledged legacy write always has an entry and none is lost if the
process dies between the two stores. The reverse outbox of the `primary` phase lives there too.

Concrete adapters: `sql.SqlAdapter` (any DB-API connection or SQLAlchemy URL; SQLite tested) and
`redis_hash.RedisHashAdapter`; `demo.py` is the demo monolith (a `users` table of profile fields).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

Row = Mapping[str, Any]
"""One legacy record as column (or hash field) name -> value; values are str, int, float or None."""


class Direction(enum.StrEnum):
    """Which way an outbox entry flows."""

    FORWARD = "forward"
    """Legacy -> microstate: a legacy write during dual writes (and canary) to apply to the microstate."""
    REVERSE = "reverse"
    """Microstate -> legacy: a microstate write in the primary phase, to keep legacy current for rollback."""


class RowCodec(Protocol[M]):
    """How one slice's message maps to the monolith's columns (or hash fields) and back.

    `columns` are the legacy names other than the key; `to_row` gives a value for each of them (None for
    absent), `from_row` builds the message from them plus the key. The mapping must round-trip for every field
    the monolith holds; fields the monolith lacks (an etag, server timestamps) are simply not carried."""

    key_column: str
    columns: tuple[str, ...]

    def to_row(self, message: M) -> dict[str, Any]: ...

    def from_row(self, key: str, row: Row) -> M: ...

    def key_of(self, message: M) -> str: ...


@runtime_checkable
class LegacyAdapter(Protocol[M]):
    """The monolith's reads and writes for one slice, in the slice's message type `M`.

    Keys are the slice's resource ids (a profile's user_id) and order as Python `str` comparison does.
    Writes carry a request id (AIP-155): a write whose request id the adapter has already applied changes
    nothing and returns the record as it now is, so retries (of the caller, of the reverse outbox) are safe.
    Every call may raise the backend's own connection errors; nothing is half-written (one transaction)."""

    async def get(self, key: str) -> M | None:
        """The record under `key`, or None when the monolith has none."""
        ...

    async def put(self, key: str, value: M, *, request_id: str, outbox: Direction | None = None) -> M:
        """Create or replace the record under `key` with `value` (its key field is set to `key`); returns
        the record as now stored. `outbox`: also append an outbox entry of that direction for this write,
        in the same transaction (the Router passes FORWARD during dual writes, REVERSE never: see
        `OutboxStore.append`). A FORWARD-recorded write supersedes the key's pending REVERSE entries."""
        ...

    async def delete(self, key: str, *, request_id: str, outbox: Direction | None = None) -> bool:
        """Delete the record under `key`; True if there was one (a repeated request id answers as the first
        time did not matter: True). `outbox` as for `put`."""
        ...

    def scan(self, start: str = "", end: str = "", *, batch_size: int = 500) -> AsyncIterator[tuple[str, M]]:
        """Every record with `start <= key < end` (an empty `end`: no upper bound) as (key, message), in
        ascending key order, read `batch_size` at a time (each batch is consistent; the whole scan is not a
        snapshot: backfill and reconciliation are built for that). For backfill and reconciliation."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Outcome(enum.StrEnum):
    """How an outbox entry ended."""

    APPLIED = "applied"
    """Applied on the other side (or found already applied by request id)."""
    DEAD_LETTERED = "dead_lettered"
    """Given up on (a permanent error, or attempts exhausted); kept with its last error for a person."""
    SUPERSEDED = "superseded"
    """Overwritten at its destination by a newer write to the same key before it was applied."""


@dataclass(frozen=True)
class OutboxEntry:
    """One write waiting to reach the other side. `value` is the serialized message (None: a delete)."""

    sequence: int
    direction: Direction
    key: str
    request_id: str
    value: bytes | None
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class OutboxCounts:
    """Totals of one direction since the outbox was created: entries appended, pending now, and settled by
    outcome. `appended == pending + applied + dead_lettered + superseded` always holds."""

    appended: int = 0
    pending: int = 0
    applied: int = 0
    dead_lettered: int = 0
    superseded: int = 0


@runtime_checkable
class OutboxStore(Protocol):
    """The durable outbox of one slice, kept in the monolith's store beside the slice's records.

    Entries of one direction are delivered in `sequence` order (per key order is what matters: the Router's
    relay applies them one at a time). Settling is exactly once: an entry is pending until `settle`."""

    async def append(self, direction: Direction, key: str, request_id: str, value: bytes | None) -> int:
        """Append an entry on its own (the REVERSE outbox of the primary phase, written after the microstate
        acknowledged); supersedes the key's pending entries of the other direction. Returns its sequence."""
        ...

    async def pending(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        """The oldest pending entries of `direction`, in sequence order."""
        ...

    async def pending_for(self, direction: Direction, key: str) -> list[OutboxEntry]:
        """The pending entries of `direction` for one record key, in sequence order."""
        ...

    async def retry_later(self, entry: OutboxEntry, error: str) -> None:
        """Count a failed attempt on `entry` (it stays pending, at its place in the order)."""
        ...

    async def settle(self, entry: OutboxEntry, outcome: Outcome, error: str = "") -> None:
        """End `entry` with `outcome`; a dead-lettered one is kept, with `error`, for `dead_letters`."""
        ...

    async def apply_reverse(self, entry: OutboxEntry, value: Message | None) -> bool:
        """Apply a REVERSE `entry` to the legacy record (`value`, None: delete) and settle it APPLIED, in one
        transaction, only if it is still pending; False if it was not (settled, or superseded by a newer
        legacy write). So a relay that is slow to apply an old microstate write never overwrites a newer
        legacy write made after a rollback."""
        ...

    async def counts(self, direction: Direction) -> OutboxCounts:
        """The direction's totals."""
        ...

    async def dead_letters(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        """Dead-lettered entries, oldest first, with their last error."""
        ...
