"""Off-path comparison of legacy and candidate answers: counters per field and phase, noise, samples.

The router hands every compared pair (a sampled read in shadow, dual_write or canary, where both sides
are read) to `Comparator.observe`, with the phase it routed the read by, after the caller has its answer,
and, for a sampled fraction, two legacy answers to the same request to `observe_noise`. A field's
differences count as a real mismatch only under Diffy's rule (opendiffy/diffy `JoinedDifferences`): its
candidate-vs-legacy rate must exceed its legacy-vs-legacy (noise) rate, by more than `relative` of their
sum and more than `absolute` of all comparisons. So a timestamp that differs on every call of the legacy
path itself reads as noise, and a field the candidate gets wrong reads as a mismatch.

Nothing personal is kept: mismatch samples hold keyed digests of the two messages and redacted diffs
(diff.py). Counts are exact across threads (one lock); `stats()` is a snapshot to export or alert on.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from microstate.client.extraction.diff import CompareRules, FieldDiff, canonical_bytes, differences

RELATIVE_THRESHOLD = 0.20
"""Diffy's default: |raw - noise| / (raw + noise) must exceed 20%."""
ABSOLUTE_THRESHOLD = 0.0003
"""Diffy's default: |raw - noise| must exceed 0.03% of the comparisons."""
DEFAULT_RULES = CompareRules()
"""Compare every field exactly, floats within 1e-6."""
LATENCY_BOUNDS = tuple(10e-6 * 2**i for i in range(24))
"""Histogram bucket upper bounds in seconds: 10 µs to ~84 s, doubling."""


def is_real(
    diffs: int,
    compared: int,
    noise_diffs: int,
    noise_compared: int,
    *,
    relative: float = RELATIVE_THRESHOLD,
    absolute: float = ABSOLUTE_THRESHOLD,
) -> bool:
    """Diffy's rule on rates: the candidate's difference rate against the noise rate (0 when unsampled)."""
    if compared == 0 or diffs == 0:
        return False
    raw = diffs / compared
    noise = noise_diffs / noise_compared if noise_compared else 0.0
    return raw > noise and (raw - noise) / (raw + noise) > relative and raw - noise > absolute


class Latency:
    """A fixed-bucket histogram (Prometheus-style bounds) of one side's seconds."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile (inf past the last bound; 0 when empty)."""
        if not self.count:
            return 0.0
        rank, seen = q * self.count, 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank and n:
                return LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else float("inf")
        return float("inf")


@dataclass(frozen=True, slots=True)
class FieldVerdict:
    """One field of one operation in one phase: how often it differed, against how often legacy did."""

    phase: str
    operation: str
    path: str
    diffs: int
    compared: int
    noise_diffs: int
    noise_compared: int
    real: bool
    """A real mismatch under Diffy's rule; False: noise (or too rare to tell from it)."""

    @property
    def rate(self) -> float:
        return self.diffs / self.compared if self.compared else 0.0

    @property
    def noise_rate(self) -> float:
        return self.noise_diffs / self.noise_compared if self.noise_compared else 0.0


@dataclass(frozen=True, slots=True)
class MismatchSample:
    """One differing pair, as kept: digests of both canonical messages and the redacted field diffs."""

    phase: str
    operation: str
    time: float
    legacy_digest: str
    candidate_digest: str
    diffs: tuple[FieldDiff, ...]


@dataclass(frozen=True, slots=True)
class OperationStats:
    phase: str
    operation: str
    compared: int
    """Pairs where the candidate answered (an answer of None included)."""
    differing: int
    """Pairs with at least one differing field, noise included."""
    candidate_errors: dict[str, int]
    """Candidate failures by exception type (the caller never saw them)."""
    legacy_p50: float
    legacy_p99: float
    candidate_p50: float
    candidate_p99: float


@dataclass(frozen=True, slots=True)
class ComparisonStats:
    operations: tuple[OperationStats, ...]
    fields: tuple[FieldVerdict, ...]
    samples: tuple[MismatchSample, ...]

    def mismatches(self) -> list[FieldVerdict]:
        return [verdict for verdict in self.fields if verdict.real]

    def noise(self) -> list[FieldVerdict]:
        return [verdict for verdict in self.fields if not verdict.real]


@dataclass(slots=True)
class _Counts:
    compared: int = 0
    differing: int = 0
    field_diffs: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    legacy: Latency = field(default_factory=Latency)
    candidate: Latency = field(default_factory=Latency)


@dataclass(slots=True)
class _Noise:
    compared: int = 0
    field_diffs: Counter[str] = field(default_factory=Counter)


class Comparator:
    """Compares shadowed answers off the request path; satisfies the router's comparator interface.

    `rules` maps an operation to its CompareRules (missing: `default_rules`). Counters split by the phase
    each pair was read in, which the Router passes with it; `phase_of(operation)` names it for callers
    that do not. `samples` bounds the mismatch samples kept per operation and phase; `digest_key` keys
    every digest (default: random per comparator).
    """

    def __init__(
        self,
        rules: dict[str, CompareRules] | None = None,
        *,
        default_rules: CompareRules = DEFAULT_RULES,
        phase_of: Callable[[str], str] = lambda operation: "shadow",
        samples: int = 20,
        digest_key: bytes | None = None,
        relative: float = RELATIVE_THRESHOLD,
        absolute: float = ABSOLUTE_THRESHOLD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = dict(rules or {})
        self._default_rules = default_rules
        self._phase_of = phase_of
        self._sample_limit = samples
        self._key = secrets.token_bytes(16) if digest_key is None else digest_key
        self._relative, self._absolute = relative, absolute
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], _Counts] = {}
        self._noise: dict[str, _Noise] = {}
        self._samples: dict[tuple[str, str], deque[MismatchSample]] = {}

    def rules_for(self, operation: str) -> CompareRules:
        return self._rules.get(operation, self._default_rules)

    def digest(self, message: Message | None, operation: str) -> str:
        """A keyed digest of the canonical message: equal for equal answers, useless to guess values with."""
        if message is None:
            return "none"
        raw = canonical_bytes(message, self.rules_for(operation))
        return hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:16]

    def observe(
        self,
        operation: str,
        legacy: Message | None,
        candidate: Message | None,
        *,
        legacy_seconds: float,
        candidate_seconds: float | None,
        candidate_error: BaseException | None,
        phase: str | None = None,
    ) -> None:
        """Count one compared pair: the candidate's failure, or its answer's differing fields, under
        `phase` (the Router passes the phase it routed the read by; without it, `phase_of`)."""
        phase = self._phase_of(operation) if phase is None else phase
        found: list[FieldDiff] = []
        if candidate_error is None:
            found = differences(legacy, candidate, self.rules_for(operation), key=self._key)
        sample = None
        if found:
            sample = MismatchSample(
                phase,
                operation,
                self._clock(),
                self.digest(legacy, operation),
                self.digest(candidate, operation),
                tuple(found),
            )
        with self._lock:
            counts = self._counts.setdefault((phase, operation), _Counts())
            counts.legacy.add(legacy_seconds)
            if candidate_seconds is not None:
                counts.candidate.add(candidate_seconds)
            if candidate_error is not None:
                counts.errors[type(candidate_error).__name__] += 1
                return
            counts.compared += 1
            if sample is not None:
                counts.differing += 1
                counts.field_diffs.update(diff.path for diff in found)
                kept = self._samples.setdefault((phase, operation), deque(maxlen=self._sample_limit))
                kept.append(sample)

    def observe_noise(self, operation: str, first: Message | None, second: Message | None) -> None:
        """Count one legacy-vs-legacy pair (the same request answered twice): the noise of each field."""
        found = differences(first, second, self.rules_for(operation), key=self._key)
        with self._lock:
            noise = self._noise.setdefault(operation, _Noise())
            noise.compared += 1
            noise.field_diffs.update(diff.path for diff in found)

    def stats(self) -> ComparisonStats:
        """A snapshot of every counter, every field's verdict and the samples kept."""
        with self._lock:
            operations, verdicts = [], []
            for (phase, operation), counts in sorted(self._counts.items()):
                operations.append(
                    OperationStats(
                        phase,
                        operation,
                        counts.compared,
                        counts.differing,
                        dict(counts.errors),
                        counts.legacy.quantile(0.5),
                        counts.legacy.quantile(0.99),
                        counts.candidate.quantile(0.5),
                        counts.candidate.quantile(0.99),
                    )
                )
                verdicts.extend(self._verdicts(phase, operation, counts))
            samples = tuple(sample for kept in self._samples.values() for sample in kept)
        return ComparisonStats(tuple(operations), tuple(verdicts), samples)

    def _verdicts(self, phase: str, operation: str, counts: _Counts) -> list[FieldVerdict]:
        noise = self._noise.get(operation, _Noise())
        verdicts = []
        for path, diffs in sorted(counts.field_diffs.items()):
            noisy = noise.field_diffs[path]
            thresholds = {"relative": self._relative, "absolute": self._absolute}
            real = is_real(diffs, counts.compared, noisy, noise.compared, **thresholds)
            verdicts.append(
                FieldVerdict(phase, operation, path, diffs, counts.compared, noisy, noise.compared, real)
            )
        return verdicts
