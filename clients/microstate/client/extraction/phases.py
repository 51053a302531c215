"""Route phases of a slice, held as a flag in the flags microstate, and `PhaseControl`, which moves them.

A slice's route is the string flag `route.<slice>` (and, to give one operation its own phase,
`route.<slice>.<operation>`; the Router's operations are "get", "put" and "delete"). Its variants are the
phases; the default variant is the phase in force. Canary adds one rule: a rollout gate of p% of subjects,
bucketed on the targeting key (the record's key, a user id), answering "canary"; everyone else gets the
default variant (dual_write). The gate is the flags SDK's murmur3 bucketing, so a user never flaps between
sides and raising p keeps everyone admitted before. Settings ride in the flag's metadata (`shadow_sample`,
`noise_sample`, `budget_ms`), so one flag write moves a phase and its settings together.

Routers read the flag from their local rule set (no call per request); a move is one etag-guarded
UpdateFlag, so every SDK sees it as soon as SyncFlags delivers it, and a rollback is the same single write.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from microstate.client.errors import NotFound
from microstate.client.extraction.legacy import Direction, OutboxStore
from microstate.client.flags import FlagsClient
from microstate.flags.v1 import flags_pb2 as pb

audit = logging.getLogger("microstate.extraction.audit")


class Phase(enum.StrEnum):
    """Where a slice's calls go, in the order an extraction moves through them."""

    LEGACY = "legacy"
    """Legacy only."""
    SHADOW = "shadow"
    """Legacy answers; a sample of reads also reads the microstate, off the request path, to compare."""
    DUAL_WRITE = "dual_write"
    """Legacy answers and is authoritative; every legacy write reaches the microstate via the outbox."""
    CANARY = "canary"
    """As dual_write, but p% of subjects read the microstate (legacy on error or budget overrun)."""
    PRIMARY = "primary"
    """The microstate is authoritative; the reverse outbox keeps legacy current for a rollback."""
    RETIRED = "retired"
    """The microstate only; legacy is no longer written."""

    @property
    def rank(self) -> int:
        return list(Phase).index(self)


DEFAULT_SHADOW_SAMPLE = 0.01
DEFAULT_BUDGET_MS = 100.0
MAX_AWAITED_BACKLOG = 10_000
"""The most a move with `wait` waits on: a larger backlog is no relay keeping up."""
BACKLOG_POLL = 0.05


ROUTE_PREFIX = "route."
"""What every route flag's key starts with: the extraction's own state among an application's flags."""


def flag_key(slice_name: str, operation: str | None = None) -> str:
    route = ROUTE_PREFIX + slice_name
    return route if operation is None else f"{route}.{operation}"


@dataclass(frozen=True)
class RouteSettings:
    """A route's settings from its flag's metadata."""

    shadow_sample: float = DEFAULT_SHADOW_SAMPLE
    """Fraction of reads in shadow (also dual_write and canary's legacy side) read from the microstate too."""
    noise_sample: float = 0.0
    """Fraction of reads legacy answers that are read from legacy a second time (noise estimate)."""
    budget_ms: float = DEFAULT_BUDGET_MS
    """A canary read's budget before legacy answers instead; a shadow read gets max(this, 2 x legacy's)."""

    @classmethod
    def of(cls, metadata: Mapping[str, str]) -> RouteSettings:
        def number(name: str, default: float) -> float:
            try:
                return float(metadata.get(name, default))
            except ValueError:
                return default

        return cls(
            number("shadow_sample", DEFAULT_SHADOW_SAMPLE),
            number("noise_sample", 0.0),
            number("budget_ms", DEFAULT_BUDGET_MS),
        )

    def metadata(self) -> dict[str, str]:
        return {
            "shadow_sample": repr(self.shadow_sample),
            "noise_sample": repr(self.noise_sample),
            "budget_ms": repr(self.budget_ms),
        }


def route_flag(key: str, phase: Phase, settings: RouteSettings, canary_percent: float = 0.0) -> pb.Flag:
    """The route flag for `phase` (canary: `canary_percent` of subjects read the microstate)."""
    variants = [pb.Variant(name=each.value, value=pb.VariantValue(string_value=each.value)) for each in Phase]
    flag = pb.Flag(key=key, type=pb.VARIANT_TYPE_STRING, variants=variants, state=pb.FLAG_STATE_ENABLED)
    flag.metadata.update({**settings.metadata(), "phase": phase.value})
    flag.description = "Route of an extracted slice (microstate.client.extraction)"
    if phase is Phase.CANARY:
        flag.default_variant = Phase.DUAL_WRITE.value
        basis_points = round(canary_percent * 100)
        gate = pb.Rollout(bucketing=pb.Bucketing(), basis_points=basis_points)
        flag.rules.append(pb.Rule(variant=Phase.CANARY.value, rollout=gate, description="canary subjects"))
        flag.metadata["canary_percent"] = repr(canary_percent)
    else:
        flag.default_variant = phase.value
    return flag


def phase_of(flag: pb.Flag) -> Phase:
    """The phase a route flag is in (canary when it has its canary rule)."""
    return Phase(flag.metadata.get("phase", flag.default_variant or Phase.LEGACY.value))


def canary_percent_of(flag: pb.Flag) -> float:
    """The share (percent) of subjects a route flag's canary admits; 0 when none or unreadable."""
    try:
        return float(flag.metadata.get("canary_percent", "0"))
    except ValueError:
        return 0.0


def _reassigned(current: pb.Flag, previous: Phase, to: Phase, canary_percent: float) -> float:
    """The share of subjects whose route a move changes: all of them, but for a canary resized (the
    difference of the two shares: the gate keeps the admitted subjects admitted) or a move that keeps the
    phase."""
    if previous is to is Phase.CANARY:
        return abs(canary_percent - canary_percent_of(current)) / 100
    return 0.0 if previous is to else 1.0


class PhaseGuardError(Exception):
    """A phase move whose guard does not hold (pass force=True to override)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Move:
    """A phase move, made or (validate_only) only checked."""

    previous: Phase
    phase: Phase
    flag: pb.Flag
    """The flag as stored after the move (as it would be, for validate_only)."""
    reassigned_fraction: float
    """The share of subjects whose route changes (1.0 for a whole-slice move; a canary resize moves less)."""
    validate_only: bool
    problems: list[str] = field(default_factory=list)
    """Guards that do not hold (a validate_only move reports them instead of raising)."""


class PhaseControl:
    """Moves a slice's route between phases with etag-guarded flag writes (the admin side)."""

    def __init__(
        self,
        flags: FlagsClient,
        slice_name: str,
        *,
        outbox: OutboxStore | None = None,
        operation: str | None = None,
    ) -> None:
        self._flags = flags
        self._key = flag_key(slice_name, operation)
        self._slice = slice_name
        self._outbox = outbox

    async def current(self) -> pb.Flag:
        """The route flag, live (created at phase legacy if there is none)."""
        try:
            return (await self._flags.get(self._key)).value
        except NotFound:
            return await self._flags.create(route_flag(self._key, Phase.LEGACY, RouteSettings()))

    async def _problems(self, previous: Phase, to: Phase, wait: float) -> list[str]:
        problems = []
        if to.rank > previous.rank + 1 and not (previous is Phase.DUAL_WRITE and to is Phase.PRIMARY):
            problems.append(f"{previous} -> {to} skips a phase")
        waited = f" (waited {wait:g} s)" if wait > 0 else ""
        if self._outbox is not None and to.rank > previous.rank:
            if to is Phase.PRIMARY and (backlog := await self._backlog(Direction.FORWARD, wait)):
                problems.append(
                    f"{backlog} forward outbox entries are not yet applied to the microstate{waited}"
                )
            if to is Phase.RETIRED and (backlog := await self._backlog(Direction.REVERSE, wait)):
                problems.append(f"{backlog} reverse outbox entries are not yet applied to legacy{waited}")
        return problems

    async def _backlog(self, direction: Direction, wait: float) -> int:
        """The entries of `direction` pending now that are still pending after up to `wait` seconds. Entries
        appended meanwhile do not count: under steady writes the outbox is never empty, but a relay that
        keeps up applies everything pending at any moment within a moment."""
        assert self._outbox is not None
        backlog = (await self._outbox.counts(direction)).pending
        if not backlog or wait <= 0 or backlog > MAX_AWAITED_BACKLOG:
            return backlog
        mark = max(entry.sequence for entry in await self._outbox.pending(direction, limit=backlog))
        deadline = time.monotonic() + wait
        while (oldest := await self._outbox.pending(direction, limit=1)) and oldest[0].sequence <= mark:
            if time.monotonic() >= deadline:
                left = await self._outbox.pending(direction, limit=backlog)
                return sum(1 for entry in left if entry.sequence <= mark)
            await asyncio.sleep(BACKLOG_POLL)
        return 0

    async def move(
        self,
        to: Phase,
        *,
        canary_percent: float = 0.0,
        settings: RouteSettings | None = None,
        etag: str | None = None,
        validate_only: bool = False,
        force: bool = False,
        reason: str = "",
        wait: float = 0.0,
    ) -> Move:
        """Move the route to `to` in one flag write guarded by `etag` (default: the etag just read, so a
        concurrent move fails with Aborted rather than being overwritten). Forward moves are guarded: one
        phase at a time (dual_write may go straight to primary), and primary/retired only once the outbox
        that feeds the new source of truth is drained; with `wait` (seconds), once every entry pending at
        the check has been applied, however many arrive meanwhile (steady writes never leave it empty).
        Moving back (a rollback) is always allowed. `validate_only` writes nothing and returns what would
        move, with any guard problems."""
        current = await self.current()
        previous = phase_of(current)
        settings = settings or RouteSettings.of(current.metadata)
        problems = [] if force else await self._problems(previous, to, wait)
        if problems and not validate_only:
            raise PhaseGuardError(problems)
        wanted = route_flag(self._key, to, settings, canary_percent)
        wanted.metadata["previous_phase"] = previous.value
        wanted.etag = current.etag if etag is None else etag
        response = await self._flags.update(wanted, validate_only=validate_only)
        moved = _reassigned(current, previous, to, canary_percent)
        if not validate_only:
            audit.info(
                "route moved",
                extra={
                    "slice": self._slice, "flag": self._key, "from_phase": previous.value,
                    "to_phase": to.value, "canary_percent": canary_percent,
                    "revision": response.flag.revision, "reason": reason,
                },
            )  # fmt: skip
        return Move(previous, to, response.flag, moved, validate_only, problems)
