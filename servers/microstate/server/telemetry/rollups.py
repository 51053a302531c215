"""Minute rollups in memory: fold events in, merge, encode for the records store, answer queries.

A rollup is one (event name, minute): its total and, per attribute key, per value, an `Aggregate` (count,
sum, min, max and an exponential histogram). Folding runs per event at ingest rate, so the hot part works
on plain Python values; the protobuf forms (storage and API) are built only when a rollup is written or read.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from microstate.server.kit import wire
from microstate.server.telemetry.rules import MAX_ATTRIBUTE_KEYS, MAX_GROUP_VALUES, MINUTE_NS, OTHER
from microstate.server.wellknown import timestamp
from microstate.telemetry.storage.v1 import record_pb2 as storage
from microstate.telemetry.v1 import telemetry_pb2 as pb

SCALE: Final = 4
"""Buckets per power of two: bucket i holds (2^((i-1)/SCALE), 2^(i/SCALE)]."""
PREFIX: Final = "r/"
CHECKPOINT_KEY: Final = "checkpoint"


def bucket_index(value: float) -> int | None:
    """The histogram bucket of `value`; None for the zero bucket (value <= 0)."""
    return math.ceil(math.log2(value) * SCALE) if value > 0 else None


@functools.cache
def upper_bound(index: int) -> float:
    return float(2 ** (index / SCALE))


@functools.cache
def _histogram_bucket(index: int, count: int) -> bytes:
    """One HistogramBucket as Histogram.buckets (field 2) on the wire: a query answers thousands, and most
    (index, count) pairs repeat."""
    bucket = pb.HistogramBucket(index=index, upper_bound=upper_bound(index), count=count)
    return wire.field(2, bucket.SerializeToString())


def rollup_key(name: str, minute: int) -> str:
    return f"{PREFIX}{name}/{minute:010d}"


def name_prefix(name: str) -> str:
    return f"{PREFIX}{name}/"


def minute_of_key(key: str) -> int:
    return int(key.rpartition("/")[2])


@dataclass(slots=True)
class Aggregate:
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zero_count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    encoded: dict[tuple[int, bool], bytes] | None = field(default=None, compare=False)
    """Its Bucket wire bytes by (start, histogram), for an aggregate that no longer changes (a decoded
    rollup's, shared by queries through the domain's cache)."""

    def add(self, count: int, total: float, mean: float, index: int | None) -> None:
        self.count += count
        self.sum += total
        if mean < self.min:
            self.min = mean
        if mean > self.max:
            self.max = mean
        if index is None:
            self.zero_count += count
        else:
            buckets = self.buckets
            buckets[index] = buckets.get(index, 0) + count

    def merge(self, other: Aggregate) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.zero_count += other.zero_count
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count

    def to_storage(self) -> storage.Aggregate:
        return storage.Aggregate(
            count=self.count,
            sum=self.sum,
            min=self.min,
            max=self.max,
            zero_count=self.zero_count,
            buckets=self.buckets,
        )

    @classmethod
    def from_storage(cls, stored: storage.Aggregate) -> Aggregate:
        return cls(stored.count, stored.sum, stored.min, stored.max, stored.zero_count, dict(stored.buckets))

    def quantiles(self, *qs: float) -> list[float]:
        """The geometric middle of the bucket holding each quantile in `qs` (ascending), kept within
        [min, max]."""
        if not self.count:
            return [0.0] * len(qs)
        estimates = []
        wanted = iter(qs)
        q = next(wanted, None)
        seen = self.zero_count
        while q is not None and seen >= q * self.count:
            estimates.append(0.0)
            q = next(wanted, None)
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            while q is not None and seen >= q * self.count:
                estimates.append(2 ** ((index - 0.5) / SCALE))
                q = next(wanted, None)
        estimates += [self.max] * (len(qs) - len(estimates))
        return [min(max(estimate, self.min), self.max) for estimate in estimates]

    def to_bucket(self, start_ns: int, *, histogram: bool) -> bytes:
        """A Bucket's wire bytes."""
        bucket = pb.Bucket(start_time=timestamp(start_ns), count=self.count, sum=self.sum)
        if not histogram:
            return bucket.SerializeToString()
        bucket.min, bucket.max = self.min, self.max
        p50, p90, p99 = self.quantiles(0.5, 0.9, 0.99)
        summary = pb.Histogram(zero_count=self.zero_count, p50=p50, p90=p90, p99=p99).SerializeToString()
        buckets = self.buckets
        parts = b"".join([_histogram_bucket(index, buckets[index]) for index in sorted(buckets)])
        # Bucket.histogram is field 6: appended as a wire field.
        return bucket.SerializeToString() + wire.field(6, summary + parts)


@dataclass(slots=True)
class Rollup:
    """One name's minute: the total and the aggregates per attribute value."""

    total: Aggregate = field(default_factory=Aggregate)
    by_attribute: dict[str, dict[str, Aggregate]] = field(default_factory=dict)

    def group(self, key: str, value: str) -> Aggregate | None:
        """The aggregate of one attribute value, made if the caps allow (else OTHER's, or None)."""
        values = self.by_attribute.get(key)
        if values is None:
            if len(self.by_attribute) >= MAX_ATTRIBUTE_KEYS:
                return None
            values = self.by_attribute[key] = {}
        aggregate = values.get(value)
        if aggregate is None:
            if len(values) >= MAX_GROUP_VALUES:
                value = OTHER
                aggregate = values.get(value)
            if aggregate is None:
                aggregate = values[value] = Aggregate()
        return aggregate

    def merge(self, other: Rollup) -> None:
        self.total.merge(other.total)
        for key, values in other.by_attribute.items():
            for value, aggregate in values.items():
                mine = self.group(key, value)
                if mine is not None:
                    mine.merge(aggregate)

    def to_storage(self, folded_through: int) -> storage.MinuteRollup:
        return storage.MinuteRollup(
            folded_through=folded_through,
            total=self.total.to_storage(),
            by_attribute={
                key: storage.AttributeValues(values={v: a.to_storage() for v, a in values.items()})
                for key, values in self.by_attribute.items()
            },
        )

    @classmethod
    def from_storage(cls, stored: storage.MinuteRollup, only: str | None = None) -> Rollup:
        """The stored rollup; with `only`, just its total and that attribute's values ("" none: what a query
        grouped by it needs)."""
        keys = stored.by_attribute if only is None else [only] if only in stored.by_attribute else []
        return cls(
            Aggregate.from_storage(stored.total),
            {
                key: {v: Aggregate.from_storage(a) for v, a in stored.by_attribute[key].values.items()}
                for key in keys
            },
        )

    def groups(self, group_by: str) -> Iterable[tuple[str, Aggregate]]:
        """(group value, aggregate): the total as "" when not grouped; events without the attribute are in
        no group."""
        if not group_by:
            return [("", self.total)]
        return self.by_attribute.get(group_by, {}).items()


Rollups = dict[tuple[str, int], Rollup]
"""(event name, minute) -> rollup."""


def fold(rollups: Rollups, events: Iterable[pb.Event]) -> None:
    """Add `events` (times filled in) to `rollups`."""
    for event in events:
        count = event.count or 1
        value = event.value
        mean = value / count if count > 1 else value
        index = math.ceil(math.log2(mean) * SCALE) if mean > 0 else None
        key = (event.name, event.time_unix_nano // MINUTE_NS)
        rollup = rollups.get(key)
        if rollup is None:
            rollup = rollups[key] = Rollup()
        rollup.total.add(count, value, mean, index)
        for attribute, attribute_value in event.attributes.items():
            aggregate = rollup.group(attribute, attribute_value)
            if aggregate is not None:
                aggregate.add(count, value, mean, index)


def series(
    minutes: Iterable[tuple[int, Rollup]],
    group_by: str,
    first_minute: int,
    step_minutes: int,
    *,
    histogram: bool,
) -> list[bytes]:
    """The series of a query, each a Series's wire bytes: minute rollups cut into steps from
    `first_minute`, one series per group."""
    steps: dict[str, dict[int, Aggregate]] = {}
    for minute, rollup in minutes:
        step = first_minute + (minute - first_minute) // step_minutes * step_minutes
        for group, aggregate in rollup.groups(group_by):
            per_step = steps.setdefault(group, {})
            if step_minutes == 1:
                per_step[step] = aggregate  # one minute per step: the stored aggregate as it is
                continue
            into = per_step.get(step)
            if into is None:
                into = per_step[step] = Aggregate()
            into.merge(aggregate)
    # Series.group_value is field 1, Series.buckets field 2 (see to_bucket: wire bytes throughout).
    return [
        wire.field(1, group.encode())
        + wire.repeated(
            2, (_bucket(per_step[at], at, histogram, step_minutes == 1) for at in sorted(per_step))
        )
        for group, per_step in sorted(steps.items())
    ]


def _bucket(aggregate: Aggregate, minute: int, histogram: bool, stored: bool) -> bytes:
    """`aggregate.to_bucket`, kept on a stored (unchanging) aggregate for the next query."""
    if not stored:
        return aggregate.to_bucket(minute * MINUTE_NS, histogram=histogram)
    if aggregate.encoded is None:
        aggregate.encoded = {}
    encoded = aggregate.encoded.get((minute, histogram))
    if encoded is None:
        encoded = aggregate.encoded[minute, histogram] = aggregate.to_bucket(
            minute * MINUTE_NS, histogram=histogram
        )
    return encoded
