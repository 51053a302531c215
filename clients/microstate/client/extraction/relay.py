"""`OutboxRelay`: delivers a slice's outbox entries to the other side, in order, until each is settled.

FORWARD entries (legacy writes of dual_write and canary) go to the microstate, REVERSE entries (microstate
writes of primary) to legacy. Entries of a direction are delivered one at a time in sequence order: a
transient failure (the microstate down, slow, restarting) stops that direction, which retries the same
entry after a backoff, so a key's writes never arrive out of order. A permanent failure (the microstate
refuses the record: INVALID_ARGUMENT and the like) or transient ones for `dead_letter_after` seconds
dead-letter the entry (an outage of minutes must not, so the limit is time, not a count of attempts):
it is kept with its last error and counted (`OutboxStore.counts`), never dropped silently. So at any time
`appended = pending + applied + dead_lettered + superseded` per direction, and once the relay has drained,
every acknowledged legacy write is either applied or dead-lettered.

Every delivery is idempotent by the entry's request id, so an entry delivered twice (a relay that died
between delivering and settling, two relays) applies once. Run one relay per slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from microstate.client import errors
from microstate.client.extraction.candidates import Candidate
from microstate.client.extraction.legacy import Direction, M, OutboxEntry, OutboxStore, Outcome

log = logging.getLogger("microstate.extraction")

PERMANENT = (
    errors.InvalidArgument,
    errors.FailedPrecondition,
    errors.PermissionDenied,
    errors.Unimplemented,
    errors.OutOfRange,
    errors.AlreadyExists,
    errors.NotFound,
)
"""Failures a retry cannot fix: the entry is dead-lettered at once."""


@dataclass(frozen=True)
class RelayOptions:
    dead_letter_after: float = 3600.0
    """Seconds an entry may keep failing transiently (the other side down) before it is dead-lettered."""
    first_backoff: float = 0.05
    max_backoff: float = 1.0
    poll_interval: float = 0.5
    """How often the outbox is read when no local write woke the relay (other processes write to it too)."""
    batch: int = 100


class OutboxRelay(Generic[M]):
    """Drains `outbox` in both directions to `candidate` (FORWARD) and legacy (REVERSE, via the outbox
    store's own conditional `apply_reverse`). `parse` turns an entry's bytes into the slice's message."""

    def __init__(
        self,
        outbox: OutboxStore,
        candidate: Candidate[M],
        parse: Callable[[bytes], M],
        options: RelayOptions | None = None,
        *,
        on_settled: Callable[[OutboxEntry, Outcome], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._candidate = candidate
        self._parse = parse
        self.options = options or RelayOptions()
        self._on_settled = on_settled
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = {direction: 0.0 for direction in Direction}
        self.retries = 0
        self._failing_since: dict[int, float] = {}
        """Transient delivery failures so far (each retried after a backoff)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """A write just appended an entry: deliver it now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                blocked = [direction for direction in Direction if not await self.drain(direction)]
            except Exception as error:  # the outbox store itself failed: try again after a while
                log.warning("outbox relay: reading the outbox failed: %s", error)
                blocked = list(Direction)
            wait = (
                min(self._backoff[direction] for direction in blocked)
                if blocked
                else self.options.poll_interval
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def drain(self, direction: Direction) -> bool:
        """Deliver pending entries of `direction` until none is left (True) or one fails transiently
        (False; it is retried after a backoff)."""
        while entries := await self._outbox.pending(direction, limit=self.options.batch):
            for entry in entries:
                if not await self._deliver(entry):
                    return False
        return True

    async def _apply(self, entry: OutboxEntry) -> None:
        value = None if entry.value is None else self._parse(entry.value)
        if entry.direction is Direction.REVERSE:
            await self._outbox.apply_reverse(entry, value)  # settles itself (or was superseded)
            return
        if value is None:
            await self._candidate.delete(entry.key, request_id=entry.request_id)
        else:
            await self._candidate.put(entry.key, value, request_id=entry.request_id)
        await self._outbox.settle(entry, Outcome.APPLIED)

    async def deliver_now(self, entry: OutboxEntry) -> None:
        """Deliver one entry now, on the caller's behalf (the Router, before a primary write of the same
        key); raises what the other side raised, unless the entry was dead-lettered for it."""
        try:
            await self._apply(entry)
        except PERMANENT as error:
            await self._give_up(entry, error)
            return
        self._settled(entry, Outcome.APPLIED)

    async def _deliver(self, entry: OutboxEntry) -> bool:
        try:
            await self._apply(entry)
        except PERMANENT as error:
            await self._give_up(entry, error)
            return True
        except Exception as error:
            since = self._failing_since.setdefault(entry.sequence, time.monotonic())
            if time.monotonic() - since >= self.options.dead_letter_after:
                await self._give_up(entry, error)
                return True
            self.retries += 1
            await self._outbox.retry_later(entry, repr(error))
            backoff = self._backoff[entry.direction]
            self._backoff[entry.direction] = min(
                self.options.max_backoff, max(self.options.first_backoff, backoff * 2)
            )
            return False
        self._settled(entry, Outcome.APPLIED)
        return True

    async def _give_up(self, entry: OutboxEntry, error: BaseException) -> None:
        log.error(
            "outbox relay: dead-lettered %s entry %d for %r: %r",
            entry.direction,
            entry.sequence,
            entry.key,
            error,
        )
        await self._outbox.settle(entry, Outcome.DEAD_LETTERED, repr(error))
        self._settled(entry, Outcome.DEAD_LETTERED)

    def _settled(self, entry: OutboxEntry, outcome: Outcome) -> None:
        self._backoff[entry.direction] = 0.0
        self._failing_since.pop(entry.sequence, None)
        if self._on_settled is not None:
            self._on_settled(entry, outcome)
