"""Batch reads too large for one response (4 MiB): which smaller batches to ask for instead, and how
their answers become the one answer the caller asked for.

The server cannot cut a BatchGet short (the ids left out would pass for answered ones), so it refuses one
that would not fit with RESPONSE_TOO_LARGE and says how large it would have been. The caller asked for
ids, not bytes, and cannot know how large records are: so the client asks again in parts sized from that
answer, and a part that is still too large (uneven records) is split again the same way.
"""

from __future__ import annotations

import math
from typing import TypeVar

from microstate.client._read import BatchRead, Read
from microstate.client.errors import MicrostateError, NoSnapshotError, ResponseTooLarge

T = TypeVar("T")

PART_FILL = 0.8
"""Each part aims at this share of the limit, leaving room for records larger than the batch's average."""


def parts_for(error: MicrostateError, keys: list[str]) -> list[list[str]] | None:
    """The smaller batches to ask for instead of `keys`, in order; None when `error` is not a refusal of
    the batch as too large, or one key alone was (no split can help: the error stands)."""
    if not isinstance(error, ResponseTooLarge) or len(keys) < 2:
        return None
    size, limit = error.response_bytes, error.max_response_bytes
    wanted = math.ceil(size / (limit * PART_FILL)) if size and limit else 2
    count = min(len(keys), max(2, wanted))
    per_part = math.ceil(len(keys) / count)
    return [keys[start : start + per_part] for start in range(0, len(keys), per_part)]


def combined(parts: list[BatchRead[T]]) -> BatchRead[T]:
    """One batch read from the reads of its parts, in request order. As for one call: NoSnapshotError when
    live reads failed and no key could be answered at all."""
    found: dict[str, Read[T]] = {}
    missing: list[str] = []
    unavailable: list[str] = []
    reason: MicrostateError | None = None
    for part in parts:
        found.update(part.found)
        missing += part.missing
        unavailable += part.unavailable
        reason = reason or part.fallback_reason
    if unavailable and not found and not missing and reason is not None:
        raise NoSnapshotError(tuple(unavailable), reason) from reason
    return BatchRead(found, missing, unavailable, reason)
