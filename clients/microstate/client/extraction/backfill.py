"""`backfill`: copy the legacy records that predate dual writes into the microstate.

Run it once the route is in dual_write everywhere (every SDK has seen the flag): from then on each legacy
write reaches the microstate through the outbox, so what is missing there is exactly what was written
before dual writes started. The backfill therefore only *creates* records the microstate lacks and never
overwrites one: a record the outbox already delivered is newer than the backfill's read of it and is kept
(that is what makes the cut-over point implicit and race-free for writes). A key deleted during the scan
can be re-created from the scan's older read; reconciliation (`microstate reconcile`) repairs that.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from microstate.client.extraction.candidates import Candidate
from microstate.client.extraction.legacy import LegacyAdapter, M
from microstate.client.extraction.relay import PERMANENT


@dataclass
class BackfillReport:
    scanned: int = 0
    created: int = 0
    """Records the microstate lacked, now copied."""
    existing: int = 0
    """Records the microstate already had (delivered by the outbox, or an earlier backfill): kept."""
    refused: dict[str, str] = field(default_factory=dict)
    """Records the microstate refuses (INVALID_ARGUMENT and other permanent errors): key -> error."""


def backfill_request_id(key: str, value: bytes) -> str:
    """A request id that is the same for the same record, so a re-run backfill applies once."""
    return "backfill-" + hashlib.sha256(key.encode() + b"\0" + value).hexdigest()[:40]


async def backfill(
    legacy: LegacyAdapter[M],
    candidate: Candidate[M],
    *,
    start: str = "",
    end: str = "",
    concurrency: int = 8,
    batch_size: int = 500,
) -> BackfillReport:
    """Create in the microstate every legacy record in [start, end) that it lacks (see the module doc).
    A record the microstate refuses is reported and skipped; a transient failure ends the backfill with
    the error (re-run it: what it created is found existing)."""
    report = BackfillReport()

    async def copy(key: str, value: M) -> None:
        request_id = backfill_request_id(key, value.SerializeToString(deterministic=True))
        try:
            created = await candidate.create(key, value, request_id=request_id)
        except PERMANENT as error:
            report.refused[key] = repr(error)
            return
        if created:
            report.created += 1
        else:
            report.existing += 1

    wave: list[Coroutine[Any, Any, None]] = []
    async for key, value in legacy.scan(start, end, batch_size=batch_size):
        report.scanned += 1
        wave.append(copy(key, value))
        if len(wave) >= concurrency:
            await asyncio.gather(*wave)
            wave = []
    await asyncio.gather(*wave)
    return report
