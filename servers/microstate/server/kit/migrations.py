"""Schema versions of a slice's stored records, declared migrations between them, and a store that serves
every version while a migration runs.

A slice that changes how it encodes its records declares a `Schema`: one `Migration` per version after the
first, each with an `up` step (version N-1 -> N) and a `down` step (N -> N-1), pure functions on a record's
stored bytes. Version 1 is the encoding the slice had before it declared anything, stored as it is; a record
at version N >= 2 is stored as `b"\\x00" + bytes([N]) + payload`. No version-1 value starts with a NUL byte
(a protobuf message never does: field number 0 does not exist; nor does JSON or text), so every stored value
says its own version and readers need no side table.

The slice's code reads and writes the newest version, `Schema.head`. It reaches its records store through
`VersionedStore`, which converts on the way: a record read at any version is presented at the head (a NUL
stamp stripped, or the steps applied in memory), and a record written goes to the store at the namespace's
*write version*, read from the namespace's schema state (`SchemaState`, stored under the reserved key
`SCHEMA_KEY` of the same namespace) at most `refresh` seconds earlier. Until someone runs a migration the
write version is 1, so deploying code with a new schema changes nothing stored; `microstate migrate SLICE
--to N` (kit/migrate.py) moves the write version and converts the records online, both ways.
"""

from __future__ import annotations

import builtins
import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from microstate.server.store.base import (
    Change,
    IfMatch,
    Page,
    PreconditionFailed,
    Record,
    Store,
    StoreMisconfigured,
)

SCHEMA_KEY: Final = "~microstate.schema"
"""The reserved key of a namespace's SchemaState; no slice's keys may start with "~" (none of them do)."""
_MARK: Final = 0
DEFAULT_REFRESH: Final = 1.0
"""Seconds a VersionedStore trusts the schema state it read before reading it again."""


def stored_version(value: bytes) -> int:
    """The schema version a stored value is at (1 for a value without a version stamp)."""
    return value[1] if value[:1] == b"\x00" and len(value) >= 2 else 1


def stamp(version: int, payload: bytes) -> bytes:
    """The stored form of `payload` at `version`."""
    return payload if version == 1 else bytes((_MARK, version)) + payload


def payload_of(value: bytes) -> bytes:
    """A stored value without its version stamp."""
    return value if stored_version(value) == 1 else value[2:]


@dataclass(frozen=True)
class Migration:
    """One step between two schema versions: `up` turns a payload at `version - 1` into one at `version`,
    `down` turns it back. Both are pure and total on every payload the other one or the slice can produce,
    and `down(up(p)) == p` byte for byte (tests check it)."""

    version: int
    description: str
    up: Callable[[bytes], bytes]
    down: Callable[[bytes], bytes]
    reads_older: bool = False
    """The slice's code reads a payload of `version - 1` as it is (an additive change, as profile's): reads
    of older records then skip `up`, so a read costs nothing extra before the records are migrated."""


@dataclass(frozen=True)
class Schema:
    """The declared versions of one slice's records: version 1, then one Migration per later version."""

    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        versions = [migration.version for migration in self.migrations]
        if versions != list(range(2, 2 + len(versions))) or len(versions) > 254:
            raise ValueError(
                f"migrations must lead to versions 2, 3, ... in order (at most 255), not {versions}"
            )

    @property
    def head(self) -> int:
        """The newest version: the one the slice's code reads and writes."""
        return 1 + len(self.migrations)

    def check(self, version: int) -> None:
        """ValueError unless `version` is one this schema declares."""
        if not 1 <= version <= self.head:
            raise ValueError(
                f"schema version {version} is not declared: this slice has versions 1 to {self.head}"
            )

    def convert(self, payload: bytes, source: int, target: int) -> bytes:
        """`payload`, at version `source`, brought to version `target` through every step in between."""
        for version in range(source + 1, target + 1):
            payload = self.migrations[version - 2].up(payload)
        for version in range(source, target, -1):
            payload = self.migrations[version - 2].down(payload)
        return payload

    def restamp(self, value: bytes, target: int) -> bytes:
        """A stored value (any version) as stored at `target`."""
        source = stored_version(value)
        if source == target:
            return value
        self.check(source)
        return stamp(target, self.convert(payload_of(value), source, target))

    def to_head(self, value: bytes) -> bytes:
        """A stored value (any version) as the slice's code reads it."""
        head = self.head
        source = stored_version(value)
        if source == head:
            return value[2:] if head > 1 else value
        self.check(source)
        if all(migration.reads_older for migration in self.migrations[source - 1 :]):
            return payload_of(value)
        return self.convert(payload_of(value), source, head)

    def from_head(self, payload: bytes, target: int) -> bytes:
        """What the slice's code wrote (at the head) as stored at `target`."""
        return stamp(target, self.convert(payload, self.head, target))


@dataclass(frozen=True)
class SchemaState:
    """Where a namespace stands: the version writers write, and the progress of a running migration."""

    version: int = 1
    """The version every write stores: a running migration's target, else the version of every record."""
    source: int | None = None
    """The version a running migration started from; None when no migration runs."""
    after: str | None = None
    """The last key the running pass has converted (it resumes after it); None before the first batch."""
    converted: int = 0
    """Records the running migration has converted so far."""
    sweep: bool = False
    """The running migration has finished its first pass and is checking every record again."""

    @property
    def running(self) -> bool:
        return self.source is not None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SchemaState:
        return cls(**json.loads(raw))


async def read_state(store: Store) -> tuple[SchemaState, int | None]:
    """The namespace's schema state and the revision of its record (None: never written, so version 1)."""
    record = await store.get(SCHEMA_KEY)
    if record is None:
        return SchemaState(), None
    return SchemaState.decode(record.value), record.revision


async def known_version(store: Store, schema: Schema) -> int:
    """The namespace's write version; StoreMisconfigured when `schema` does not declare it (the records
    were migrated by newer code: this code cannot read them)."""
    state, _ = await read_state(store)
    if state.version > schema.head:
        raise StoreMisconfigured(
            f"the stored records are at schema version {state.version}, and this server knows versions"
            f" up to {schema.head}: run newer code, or migrate down first"
        )
    return state.version


class VersionedStore:
    """`store` as the slice's code sees it: every record at `schema.head`, whatever version it is stored at,
    and every write stored at the namespace's write version. Revisions, TTLs and changes are the store's own;
    the reserved schema key is hidden."""

    def __init__(self, store: Store, schema: Schema, *, refresh: float = DEFAULT_REFRESH) -> None:
        self.store = store
        self.schema = schema
        self.capabilities = store.capabilities
        self._refresh = refresh
        self._version = 1
        self._read_at = -math.inf

    async def write_version(self) -> int:
        """The version writes are stored at: the schema state as read at most `refresh` seconds ago (read
        again on the write path when older: one GET a second at most, and no task to outlive the store)."""
        if time.monotonic() - self._read_at >= self._refresh:
            await self._read_version()
        return self._version

    async def _read_version(self) -> None:
        self._version = await known_version(self.store, self.schema)
        self._read_at = time.monotonic()

    def _present(self, record: Record) -> Record:
        return record._replace(value=self.schema.to_head(record.value))

    async def get(self, key: str) -> Record | None:
        record = await self.store.get(key)
        return None if record is None or key == SCHEMA_KEY else self._present(record)

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        found = await self.store.batch_get(keys)
        return {key: self._present(record) for key, record in found.items() if key != SCHEMA_KEY}

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: IfMatch = None,
        ttl: float | None = None,
        audit: bytes | None = None,
    ) -> Record:
        stored = self.schema.from_head(value, await self.write_version())
        try:
            record = await self.store.put(key, stored, if_match=if_match, ttl=ttl, **_audited(audit))
        except PreconditionFailed as exc:
            current = None if exc.current is None else self._present(exc.current)
            raise PreconditionFailed(key, current) from None
        return record._replace(value=value)

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        try:
            return await self.store.delete(key, if_match=if_match, **_audited(audit))
        except PreconditionFailed as exc:
            current = None if exc.current is None else self._present(exc.current)
            raise PreconditionFailed(key, current) from None

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        page = await self.store.list(prefix, after=after, limit=limit)
        records = [self._present(record) for record in page.records if record.key != SCHEMA_KEY]
        return Page(records, page.next_after)

    async def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncGenerator[Change, None]:
        changes = self.store.watch(prefix, after=after)
        try:
            async for change in changes:
                if change.key == SCHEMA_KEY:
                    continue
                if change.record is not None:
                    change = Change(
                        change.kind,
                        change.key,
                        self._present(change.record),
                        change.cursor,
                        change.commit_time,
                    )
                yield change
        finally:
            await changes.aclose()

    async def head_cursor(self) -> str:
        return await self.store.head_cursor()

    async def audit_journal(self, after: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        return await self.store.audit_journal(after, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)  # what some backends add (forget, for erasure: kit/subjects.py)

    async def ping(self) -> None:
        await self.store.ping()
        await self._read_version()  # a namespace newer than this code refuses the start

    async def close(self) -> None:
        await self.store.close()


def _audited(audit: bytes | None) -> dict[str, bytes]:
    """The `audit=` argument to pass on, only when given: the store inside may be an AuditedStore, which makes
    its own (audit/audited.py)."""
    return {} if audit is None else {"audit": audit}


def versioned(store: Store, schema: Schema | None) -> Store:
    """`store` behind a VersionedStore when the slice declares a schema, else as it is."""
    return store if schema is None else VersionedStore(store, schema)
