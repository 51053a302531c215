"""Reconciliation of a slice's microstate with its legacy side: range digests, then keys, then repairs.

Both sides are read in key order, a range of `range_size` keys of the source of truth at a time, with the
other side's keys up to the same bound: the two ranges' digests are compared, and only a range whose
digests differ is compared key by key. A key that differs is read again from both sides just before it is
repaired (a live write may have settled it meanwhile), then written from the source of truth of the current
phase: legacy until `primary`, the microstate from then on. Writes carry a request id made of the run and
the key, so a repeated run or a retried write applies once.

What is compared is what both sides can hold: the legacy codec's row of each message (`RowCodec.to_row`),
so fields only the microstate has (an embedding, server times, an etag) never count, and a repair of the
microstate changes only the fields legacy owns (`overlay`). Range digests hash the rows; a differing key is
compared field by field on its projection (the row read back as a message, `RowCodec.from_row`).

Every row is read once per run: the sides are read locally, page by page, so a range digest costs its rows.
The digests keep the key-by-key work (decoding, field diffs, repairs) to the differing ranges; a side that
kept digests of its ranges as it is written could answer them without reading its rows, which is when a
deeper Merkle tree would pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf.message import Message

from microstate.client.extraction.compare import DEFAULT_RULES
from microstate.client.extraction.diff import CompareRules, differences
from microstate.client.extraction.legacy import RowCodec
from microstate.server.kit.extraction import StoreBinding, every_key
from microstate.server.store.base import (
    ABSENT,
    IfMatch,
    PreconditionFailed,
    Store,
    require_precondition,
)

LEGACY, MICROSTATE = "legacy", "microstate"
TRUTH = {"legacy": LEGACY, "shadow": LEGACY, "dual_write": LEGACY, "canary": LEGACY, "primary": MICROSTATE}
"""The source of truth in each phase (`retired` has no legacy side left to reconcile with)."""


class ReconcileError(Exception):
    """The sides cannot be reconciled as configured (a phase without a source of truth, keys out of order)."""


class Side(Protocol):
    """What reconciliation needs of each side: the legacy adapter's protocol (extraction/legacy.py)."""

    async def get(self, key: str) -> Any: ...

    async def put(self, key: str, value: Any, *, request_id: str) -> Any: ...

    async def delete(self, key: str, *, request_id: str) -> bool: ...

    def scan(
        self, start: str = "", end: str = "", *, batch_size: int = 500
    ) -> AsyncIterator[tuple[str, Any]]: ...


class StoreSide:
    """The microstate's side read and written through its store URL: pages of `store.list`, no server.

    Read this way, not over gRPC, because a scan is the store's own ordered paging (a page of 1,000 records
    is one query) with no per-call server cost and needs no running server or credentials. A write after a
    `get` of the same key is a compare-and-set on the revision that get saw, so a live write landing in
    between wins (PreconditionFailed: the reconciler reports a conflict, for the next run) and is never
    overwritten with what was read before it. The store appends each repair to its change log as any write,
    so watchers and near-caches see it. Keys the slice does not `own` (kit/extraction.py) are not listed,
    and a repair refuses to write or delete one."""

    def __init__(
        self, store: Store, binding: StoreBinding, *, owns: Callable[[str], bool] = every_key
    ) -> None:
        self._store = store
        self._binding = binding
        self._owns = owns
        self._seen: dict[str, IfMatch] = {}
        """Per key, what the last `get` saw (a revision, or ABSENT), until a write uses it."""

    async def get(self, key: str) -> Message | None:
        record = await self._store.get(key)
        self._seen[key] = ABSENT if record is None else record.revision
        return None if record is None else self._binding.to_message(record)

    def _owned(self, key: str) -> None:
        if not self._owns(key):
            raise ReconcileError(f"{key!r} is not one of the slice's reconciled records: left alone")

    async def put(self, key: str, value: Message, *, request_id: str) -> Message:
        self._owned(key)
        current = await self._store.get(key)
        expected = self._seen.pop(key, ABSENT if current is None else current.revision)
        require_precondition(key, expected, current)
        raw = self._binding.to_bytes(key, value, current)
        written = await self._store.put(key, raw, if_match=expected)
        return self._binding.to_message(written)

    async def delete(self, key: str, *, request_id: str) -> bool:
        self._owned(key)
        expected = self._seen.pop(key, None)
        if expected is ABSENT:  # nothing was there to delete: whatever is there now was written since
            return False
        return await self._store.delete(key, if_match=expected)

    async def scan(
        self, start: str = "", end: str = "", *, batch_size: int = 500
    ) -> AsyncIterator[tuple[str, Message]]:
        after: str | None = None
        if start:
            if self._owns(start) and (first := await self._store.get(start)) is not None:
                yield start, self._binding.to_message(first)
            after = start
        while True:
            page = await self._store.list(after=after, limit=batch_size)
            for record in page.records:
                if end and record.key >= end:
                    return
                if not self._owns(record.key):
                    continue
                yield record.key, self._binding.to_message(record)
            if page.next_after is None:
                return
            after = page.next_after


@dataclass(frozen=True, slots=True)
class Divergence:
    key: str
    kind: str
    """"missing": only the source of truth has the key; "extra": only the other side; "differs"."""
    paths: tuple[str, ...]
    """The differing fields (no values: the report may be shared)."""
    outcome: str
    """"repaired", "settled" (equal when read again), "conflict" (written meanwhile: next run), "failed: …",
    or "found" (a dry run)."""


@dataclass(slots=True)
class ReconcileReport:
    slice: str
    phase: str
    truth: str
    truth_keys: int = 0
    other_keys: int = 0
    ranges: int = 0
    differing_ranges: int = 0
    keys_compared: int = 0
    """Keys compared one by one: those of the differing ranges."""
    divergences: list[Divergence] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def repaired(self) -> int:
        return sum(d.outcome == "repaired" for d in self.divergences)

    @property
    def unresolved(self) -> int:
        """Divergences still there after the run: found in a dry run, conflicts and failures."""
        return sum(d.outcome not in ("repaired", "settled") for d in self.divergences)

    def summary(self) -> str:
        return (
            f"reconcile {self.slice} (phase {self.phase}, truth {self.truth}): {self.truth_keys} keys"
            f" against {self.other_keys}, {self.differing_ranges} of {self.ranges} ranges differ,"
            f" {self.keys_compared} keys compared, {len(self.divergences)} divergences,"
            f" {self.repaired} repaired, {self.unresolved} unresolved, {self.seconds:.2f} s"
        )

    def to_json(self) -> dict[str, Any]:
        keys = ("slice", "phase", "truth", "truth_keys", "other_keys", "ranges", "differing_ranges")
        document: dict[str, Any] = {key: getattr(self, key) for key in keys}
        document.update(
            keys_compared=self.keys_compared,
            repaired=self.repaired,
            unresolved=self.unresolved,
            seconds=round(self.seconds, 3),
            divergences=[
                {"key": d.key, "kind": d.kind, "paths": list(d.paths), "outcome": d.outcome}
                for d in self.divergences
            ],
        )
        return document


class _Ordered:
    """One side's scan with a one-record lookahead, checking the keys come in ascending order."""

    def __init__(self, name: str, scan: AsyncIterator[tuple[str, Any]]) -> None:
        self.name = name
        self._scan = scan
        self._next: tuple[str, Any] | None = None
        self._last: str | None = None
        self._done = False

    async def _peek(self) -> tuple[str, Any] | None:
        if self._next is None and not self._done:
            try:
                self._next = await anext(self._scan)
            except StopAsyncIteration:
                self._done = True
                return None
            key = self._next[0]
            if self._last is not None and key <= self._last:
                raise ReconcileError(
                    f"the {self.name} side lists {key!r} after {self._last!r}: not key order"
                )
            self._last = key
        return self._next

    async def take(self, count: int, *, through: str | None = None) -> list[tuple[str, Any]]:
        """Up to `count` records (no limit when `through` is given), and none past key `through`."""
        taken: list[tuple[str, Any]] = []
        while through is not None or len(taken) < count:
            upcoming = await self._peek()
            if upcoming is None or (through is not None and upcoming[0] > through):
                break
            taken.append(upcoming)
            self._next = None
        return taken


@dataclass(slots=True)
class _Range:
    records: list[tuple[str, Message, bytes]]
    """(key, message, its legacy row as bytes) in key order."""
    digest: bytes


def overlay(current: Message, wanted: Message, owned: Message, names: Sequence[str]) -> Message:
    """`current` with the top-level fields `names` taken from `wanted`. A map keeps the keys the other side
    cannot hold: only keys of `owned` (current as projected) or of `wanted` change."""
    result = type(current)()
    result.CopyFrom(current)
    for name in names:
        fd = result.DESCRIPTOR.fields_by_name[name]
        mine, theirs = getattr(result, name), getattr(wanted, name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            for key in list(getattr(owned, name)):
                if key not in theirs:
                    del mine[key]
            for key, value in theirs.items():
                if isinstance(value, Message):
                    mine[key].CopyFrom(value)
                else:
                    mine[key] = value
        elif fd.is_repeated:
            del mine[:]
            mine.extend(theirs)
        elif fd.message_type is not None:
            if wanted.HasField(name):
                mine.CopyFrom(theirs)
            else:
                result.ClearField(name)
        else:
            setattr(result, name, theirs)
    return result


class Reconciler:
    """One slice's two sides, how their messages compare, and the run that finds and repairs divergences."""

    def __init__(
        self,
        name: str,
        legacy: Side,
        microstate: Side,
        codec: RowCodec[Any],
        *,
        rules: CompareRules = DEFAULT_RULES,
        range_size: int = 1000,
    ) -> None:
        if range_size < 1:
            raise ValueError(f"range_size must be at least 1, not {range_size}")
        self._name = name
        self._sides = {LEGACY: legacy, MICROSTATE: microstate}
        self._codec = codec
        self._rules = rules
        self._range_size = range_size

    def _row(self, message: Message) -> bytes:
        """What the monolith holds of `message`, as bytes: its codec row's values in column order."""
        row = self._codec.to_row(message)
        return repr(tuple(row.get(column) for column in self._codec.columns)).encode()

    def _project(self, key: str, message: Message) -> Message:
        projected: Message = self._codec.from_row(key, self._codec.to_row(message))
        return projected

    def _range(self, records: list[tuple[str, Any]]) -> _Range:
        digest = hashlib.blake2b(digest_size=16)
        kept = []
        for key, message in records:
            row = self._row(message)
            digest.update(b"%d:%s%d:%s" % (len(key), key.encode(), len(row), row))
            kept.append((key, message, row))
        return _Range(kept, digest.digest())

    async def run(self, phase: str, *, repair: bool = True) -> ReconcileReport:
        """Compare every key; repair what differs from the source of truth unless `repair` is off."""
        if phase not in TRUTH:
            raise ReconcileError(
                f"phase {phase!r} has no source of truth to repair from; one of {sorted(TRUTH)}"
            )
        started = time.perf_counter()
        truth_name = TRUTH[phase]
        other_name = MICROSTATE if truth_name == LEGACY else LEGACY
        truth, other = self._sides[truth_name], self._sides[other_name]
        report = ReconcileReport(self._name, phase, truth_name)
        truth_scan = _Ordered(truth_name, truth.scan(batch_size=self._range_size))
        other_scan = _Ordered(other_name, other.scan(batch_size=self._range_size))
        run_id = uuid.uuid4().hex[:12]
        while True:
            ours = await truth_scan.take(self._range_size)
            bound = ours[-1][0] if ours else None
            theirs = await other_scan.take(self._range_size, through=bound)
            if not ours and not theirs:
                break
            report.ranges += 1
            report.truth_keys += len(ours)
            report.other_keys += len(theirs)
            expected, found = self._range(ours), self._range(theirs)
            if expected.digest == found.digest:
                continue
            report.differing_ranges += 1
            report.keys_compared += len(expected.records) + len(found.records)
            for key, kind, paths in self._keys(expected, found):
                outcome = await self._repair(key, truth, other, run_id) if repair else "found"
                report.divergences.append(Divergence(key, kind, paths, outcome))
        report.seconds = time.perf_counter() - started
        return report

    def _keys(self, expected: _Range, found: _Range) -> list[tuple[str, str, tuple[str, ...]]]:
        theirs = {key: (message, row) for key, message, row in found.records}
        divergent: list[tuple[str, str, tuple[str, ...]]] = []
        for key, message, row in expected.records:
            other = theirs.pop(key, None)
            if other is None:
                divergent.append((key, "missing", ()))
            elif other[1] != row:
                ours, their = self._project(key, message), self._project(key, other[0])
                paths = tuple(d.path for d in differences(ours, their, self._rules))
                if paths:  # equal within the float tolerance: not a divergence
                    divergent.append((key, "differs", paths))
        divergent.extend((key, "extra", ()) for key in theirs)
        return sorted(divergent)

    async def _repair(self, key: str, truth: Side, other: Side, run_id: str) -> str:
        request_id = f"reconcile-{run_id}-{key}"
        try:
            wanted, current = await asyncio.gather(truth.get(key), other.get(key))
            if wanted is None:
                if current is None:
                    return "settled"
                await other.delete(key, request_id=request_id)
                return "repaired"
            projected = self._project(key, wanted)
            if current is None:
                await other.put(key, projected, request_id=request_id)
                return "repaired"
            if self._row(current) == self._row(wanted):
                return "settled"
            owned = self._project(key, current)
            names = {d.path.split(".")[0] for d in differences(owned, projected, self._rules)}
            if not names:
                return "settled"
            await other.put(key, overlay(current, projected, owned, sorted(names)), request_id=request_id)
            return "repaired"
        except PreconditionFailed:
            return "conflict"
        except Exception as exc:  # one key's failure must not end the run: it is reported
            return f"failed: {type(exc).__name__}"


async def run_every(
    interval: float,
    once: Callable[[], Any],
    stopping: asyncio.Event,
) -> None:
    """Call `once()` (a coroutine function) now and then every `interval` seconds until `stopping` is set."""
    while not stopping.is_set():
        await once()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
