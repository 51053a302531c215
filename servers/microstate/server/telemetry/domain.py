"""The telemetry rules over the stores: ingest into the log, queries and watches over the rollups.

Ingest validates each event (a bad one is rejected, not the batch), then appends the batch as one log entry
under the dedupe key `producer_id:batch_seq`: a resent batch is not appended again, and gets the answer
stored with the first. The entry is the request's own encoding, trimmed to the accepted events, plus that
answer (storage.StoredBatch shares RecordEventsRequest's field numbers 1-3 for this).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass

from microstate.server.kit import wire
from microstate.server.kit.caches import DecodedRecords
from microstate.server.kit.resources import changes
from microstate.server.store.base import CursorExpired, Record, Store
from microstate.server.store.log import LogStore
from microstate.server.telemetry import rules
from microstate.server.telemetry.folder import Folder, decode_batch
from microstate.server.telemetry.pseudonyms import pseudonyms_of
from microstate.server.telemetry.rollups import Rollup, minute_of_key, name_prefix, rollup_key, series
from microstate.telemetry.storage.v1 import record_pb2 as storage
from microstate.telemetry.v1 import telemetry_pb2 as pb

LAG_LIMIT = 2_000
"""Batches the fold may trail the log by before ingest asks producers to slow down (retry_after)."""
SLOW_DOWN_SECONDS = 1.0
GET_BATCH = 1000
MAX_CACHED_ROLLUPS = 50_000
"""Decoded minute rollups kept (about a month of one name, or an hour of 800)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    accepted: int
    rejected: int
    error_message: str
    duplicate: bool = False
    slow_down: float = 0.0


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    start_ns: int
    end_ns: int
    step_ns: int | None
    group_by: str


@dataclass(frozen=True, slots=True)
class MinuteUpdate:
    series: list[bytes]
    """Each a Series's wire bytes."""
    resume_token: str


def _decode_rollup(record: Record) -> Rollup:
    return Rollup.from_storage(storage.MinuteRollup.FromString(record.value))


def _varint_field(number: int, value: int) -> bytes:
    return wire.varint(number << 3) + wire.varint(value)


class TelemetryDomain:
    def __init__(
        self,
        log_store: LogStore,
        records: Store,
        folder: Folder,
        *,
        rollup_ttl: float,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._log = log_store
        self._records = records
        self._pseudonyms = pseudonyms_of(records)
        self._folder = folder
        self._rollup_ttl_ns = int(rollup_ttl * rules.SECOND_NS)
        self._clock = clock
        self._head = 0
        # Past minutes' rollups rarely change, and dashboards ask for the same hours again and again.
        self._decoded = DecodedRecords(_decode_rollup, MAX_CACHED_ROLLUPS)

    async def record(self, request: pb.RecordEventsRequest) -> Recorded:
        """Store the acceptable events of `request` (changed in place: times filled, the rest removed)."""
        rules.check_producer_id(request.producer_id)
        events = request.events
        rules.check_event_count(len(events))
        if not events:
            return Recorded(0, 0, "")
        now = self._clock()
        oldest = now - self._rollup_ttl_ns
        accepted = rejected = 0
        error = ""
        refused: list[int] = []
        for index, event in enumerate(events):
            problem = rules.event_problem(event, now, oldest)
            if problem is None:
                accepted += event.count or 1
                if not event.time_unix_nano:
                    event.time_unix_nano = now
            else:
                rejected += event.count or 1
                refused.append(index)
                error = error or f"events[{index}].{problem}"
        for index in reversed(refused):
            del events[index]
        await self._pseudonymise(events)
        entry = request.SerializeToString() + _varint_field(4, accepted) + _varint_field(5, rejected)
        if error:
            entry += wire.field(6, error.encode())
        appended = await self._log.append([entry], dedupe_key=f"{request.producer_id}:{request.batch_seq}")
        self._folder.wake()
        self._head = max(self._head, appended.positions[-1])
        slow_down = SLOW_DOWN_SECONDS if self._head - self._folder.folded > LAG_LIMIT else 0.0
        if appended.duplicate:
            return await self._first_answer(appended.positions[0], slow_down)
        return Recorded(accepted, rejected, error, slow_down=slow_down)

    async def _pseudonymise(self, events: Iterable[pb.Event]) -> None:
        """Replace each subject id with its pseudonym (pseudonyms.py): the log never holds a subject id."""
        known: dict[str, str] = {}
        for event in events:
            if subject := event.subject_id:
                if (pseudonym := known.get(subject)) is None:
                    pseudonym = known[subject] = await self._pseudonyms.of(subject)
                event.subject_id = pseudonym

    async def _first_answer(self, position: int, slow_down: float) -> Recorded:
        try:
            entries = (await self._log.read(str(position - 1), limit=1)).entries
        except CursorExpired:
            entries = []
        if not entries:  # trimmed: only with a raw retention shorter than the dedupe window
            return Recorded(0, 0, "the first answer to this batch is no longer kept", True, slow_down)
        first = decode_batch(entries[0].data)
        return Recorded(first.accepted, first.rejected, first.error_message, True, slow_down)

    async def query(self, window: Window, *, histogram: bool) -> list[bytes]:
        """The series (each a Series's wire bytes) of a query."""
        rules.check_name(window.name)
        rules.check_group_by(window.group_by)
        first, minutes, step = rules.window_minutes(window.start_ns, window.end_ns, window.step_ns)
        found: list[tuple[int, Rollup]] = []
        for offset in range(0, minutes, GET_BATCH):
            keys = [
                rollup_key(window.name, m)
                for m in range(first + offset, first + min(minutes, offset + GET_BATCH))
            ]
            records = await self._records.batch_get(keys)
            found.extend((minute_of_key(key), self._decoded.decode(records[key])) for key in sorted(records))
        return series(found, window.group_by, first, step, histogram=histogram)

    async def watch_start(self, name: str, group_by: str, resume_token: str) -> str:
        rules.check_name(name)
        rules.check_group_by(group_by)
        return resume_token or await self._records.head_cursor()

    async def watch(self, name: str, group_by: str, start: str) -> AsyncGenerator[MinuteUpdate, None]:
        async for change in changes(self._records, name_prefix(name), start):
            if change.record is None:
                continue  # a rollup past its retention
            minute = minute_of_key(change.key)
            rollup = Rollup.from_storage(storage.MinuteRollup.FromString(change.record.value), group_by)
            yield MinuteUpdate(series([(minute, rollup)], group_by, minute, 1, histogram=True), change.cursor)
