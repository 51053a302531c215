"""The SDK's local rule set: a `Replica` of every flag, fed by SyncFlags, evaluated without a call.

`LocalRuleSet` is what both flags clients share; the clients only run its feed (an `@iterated` SyncFlags
operation followed in the background) and its ticks (liveness checks and saves, off the hot path).

- Feed. Snapshot chunks are collected until `last`, then replace the rule set whole; a delta is applied whole
  (one at or below the held revision is ignored); a heartbeat proves the stream alive and sets the staleness
  limit: two of the server's heartbeat intervals. A stream that ends drops the chunks it was sending; the
  next one asks for the changes after the held revision (`since_revision`), so a resume ships only deltas.
- Liveness. READY while the stream is connected and heard from within the limit; STALE once it ended or
  fell silent (evaluations then carry reason STALE and the age of the rule set); ERROR while the stream fails
  for another reason than unavailability (the held rule set is still served, STALE); NOT_READY before any
  rule set (evaluations return the caller's default, PROVIDER_NOT_READY).
- Persistence. A changed rule set is saved (temp file → fsync → rename, `_rule_set_file`) by the client's
  tick at most once per `SAVE_INTERVAL`, refreshed every `REFRESH_INTERVAL` while current, and on close; a
  client starts from the file, STALE with the file's age, until its stream connects. A file that is not
  whole is ignored (logged), never trusted in part.
- Evaluation never raises: any failure is the caller's default with reason ERROR and an error code.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from microstate.client._enums import ContractEnum
from microstate.client._replica import Replica
from microstate.client.flags import _rule_set_file
from microstate.client.flags.evaluation import CompiledFlag, compile_flag, evaluate, flag_not_found
from microstate.flags.v1 import flags_pb2 as pb

log = logging.getLogger("microstate.client")

T = TypeVar("T")

DEFAULT_HEARTBEAT_INTERVAL = 5.0
"""Seconds assumed between heartbeats until the server's first Heartbeat says."""
SAVE_INTERVAL = 1.0
"""Seconds between saves of a changing rule set."""
REFRESH_INTERVAL = 60.0
"""Seconds after which a current, unchanged rule set is saved again, so its file's age stays honest."""
TICK = 0.25
"""Seconds between the client's liveness checks and save checks."""


class Reason(ContractEnum):
    """Why an evaluation returned its value; the values are microstate.flags.v1.Reason numbers (OpenFeature's
    resolution reasons)."""

    UNSPECIFIED = 0
    STATIC = 1
    """The flag has no rules: its default variant."""
    TARGETING_MATCH = 2
    """A rule's conditions matched and it named a variant."""
    SPLIT = 3
    """A rule's split chose the variant."""
    DEFAULT = 4
    """No rule decided: the default variant, or the caller's default when the flag has none."""
    DISABLED = 5
    """The flag is disabled: its default variant (or the caller's default)."""
    ERROR = 6
    """The evaluation failed (see error_code): the caller's default."""
    STALE = 7
    """Evaluated from a rule set that may be out of date (its stream is down or silent; see stale_age)."""
    CACHED = 8


class ErrorCode(ContractEnum):
    """Why an evaluation failed; the values are microstate.flags.v1.ErrorCode numbers (OpenFeature's)."""

    UNSPECIFIED = 0
    """No error."""
    FLAG_NOT_FOUND = 1
    TYPE_MISMATCH = 2
    TARGETING_KEY_MISSING = 3
    INVALID_CONTEXT = 4
    PROVIDER_NOT_READY = 5
    """No rule set yet: the stream has not delivered one and no saved one was found."""
    GENERAL = 6
    PARSE_ERROR = 7


class RuleSetState(enum.Enum):
    NOT_READY = "not_ready"
    """No rule set yet."""
    READY = "ready"
    """Current: the stream is connected and heard from within two heartbeat intervals."""
    STALE = "stale"
    """A rule set is held but may be out of date: the stream ended or fell silent, or it came from a file."""
    ERROR = "error"
    """The stream failed for another reason than unavailability (retried); the held rule set, if any, is
    served as STALE."""


class EventKind(enum.Enum):
    READY = "ready"
    """The rule set became current (first sync, or the stream came back)."""
    CHANGED = "changed"
    """Flags changed (a snapshot or a delta was applied): `flags_changed` names them."""
    STALE = "stale"
    """The rule set may be out of date from now on."""
    ERROR = "error"
    """The stream failed for another reason than unavailability; `message` says which."""


@dataclass(frozen=True, slots=True)
class RuleSetEvent:
    """What a listener (`add_listener`) hears."""

    kind: EventKind
    revision: int | None
    flags_changed: tuple[str, ...] = ()
    """The keys created, updated or deleted (CHANGED only), in key order."""
    message: str = ""


@dataclass(frozen=True, slots=True)
class RuleSetStatus:
    state: RuleSetState
    revision: int | None
    """The revision held; None before any rule set."""
    age: float
    """Seconds since the rule set was last known current (since the stream's last message while READY);
    infinite before any rule set."""
    flags: int
    heartbeat_interval: float
    """The server's heartbeat interval (DEFAULT_HEARTBEAT_INTERVAL until it said)."""
    sync: SyncCounts


@dataclass(frozen=True, slots=True)
class SyncCounts:
    """What the sync streams brought so far: snapshots and deltas applied, heartbeats, and the encoded
    bytes of every message (a resume that ships only deltas shows here)."""

    snapshots: int = 0
    deltas: int = 0
    heartbeats: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class EvaluationDetails(Generic[T]):
    """The answer of one local evaluation (OpenFeature's evaluation details)."""

    flag_key: str
    value: T
    """The variant's value, or the caller's default when no variant applies (reason ERROR, or no default
    variant)."""
    variant: str
    """The variant's name; "" when the caller's default was returned."""
    reason: Reason
    """STALE replaces the rule's reason while the rule set may be out of date; ERROR is never replaced."""
    error_code: ErrorCode
    error_message: str
    revision: int
    """The rule set revision evaluated; 0 before any rule set."""
    stale_age: float | None
    """Seconds since the rule set was last known current, when it may be out of date; None while current."""
    flag_metadata: Mapping[str, str] = field(default_factory=dict)


class SyncProgress(NamedTuple):
    """What the SyncFlags feed yields per message: the revision to resume after (a WatchCursor change)."""

    resume_token: str


Listener = Callable[[RuleSetEvent], None]


def subject(context: Mapping[str, Any] | None, targeting_key: str | None) -> tuple[str, Mapping[str, Any]]:
    """The targeting key (the argument, else the context's "targetingKey") and the attributes of a context."""
    attributes = context if context is not None else {}
    if targeting_key is None:
        found = attributes.get("targetingKey")
        targeting_key = found if isinstance(found, str) else ""
    return targeting_key, attributes


class LocalRuleSet:
    """The synced rule set of one client (see the module docstring). Thread-safe: evaluations take no lock;
    the feed and the ticks run on one thread or task at a time."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        # Liveness is decided here (two server heartbeat intervals, learnt from the stream), so the
        # replica's own silence limit is off: its age is the time since the last sign of life.
        self._replica: Replica[str, CompiledFlag] = Replica(heartbeat_timeout=math.inf)
        self._live = False
        self._state = RuleSetState.NOT_READY
        self._heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
        self._stale_after = 2 * DEFAULT_HEARTBEAT_INTERVAL
        self._chunks: list[pb.Flag] = []
        self._want_snapshot = False
        self._listeners: tuple[Listener, ...] = ()
        self._progress = threading.Condition()
        self._state_lock = threading.Lock()
        self._failures = 0
        """Streams ended or failed so far: `start` stops waiting for a current rule set once one did."""
        self._dirty = False
        self._saved_at = -math.inf
        self._loaded = False
        self._counts = SyncCounts()
        self._closed = False

    # -- evaluation (the hot path: no lock, no call) ---------------------------------------------------

    def value(
        self, key: str, default: Any, context: Mapping[str, Any] | None, targeting_key: str | None, kind: int
    ) -> Any:
        """The value of `key` for the subject, or `default`; never raises."""
        try:
            revision = self._replica.revision
            entry = self._replica.get(key)
            if revision is None or entry is None:
                return default
            if targeting_key is None:
                targeting_key, context = subject(context, None)
            resolution = evaluate(entry.value, targeting_key, context or {}, revision, kind)
            value = resolution.value
            if value is None:
                return default
            return copy.deepcopy(value) if kind == pb.VARIANT_TYPE_OBJECT else value
        except Exception:  # never raise from an evaluation: the caller's default
            log.exception("evaluation of flag %r failed", key)
            return default

    def details(
        self, key: str, default: T, context: Mapping[str, Any] | None, targeting_key: str | None, kind: int
    ) -> EvaluationDetails[T]:
        """The evaluation of `key` with its variant, reason, error code and revision; never raises."""
        try:
            revision = self._replica.revision
            if revision is None:
                return _failed(key, default, ErrorCode.PROVIDER_NOT_READY, "no rule set yet", 0, None)
            stale_age = self.stale_age()
            entry = self._replica.get(key)
            if entry is None:
                resolution = flag_not_found(key, revision)
                return _failed(
                    key, default, ErrorCode.FLAG_NOT_FOUND, resolution.error_message, revision, stale_age
                )
            flag = entry.value
            targeting_key, attributes = subject(context, targeting_key)
            resolution = evaluate(flag, targeting_key, attributes, revision, kind)
            reason = Reason.of(resolution.reason)
            if reason is Reason.ERROR:
                code = ErrorCode.of(resolution.error_code)
                return _failed(
                    key, default, code, resolution.error_message, revision, stale_age, flag.metadata
                )
            if stale_age is not None:
                reason = Reason.STALE
            if resolution.value is None:
                return EvaluationDetails(
                    key, default, "", reason, ErrorCode.UNSPECIFIED, "", revision, stale_age, flag.metadata
                )
            value = copy.deepcopy(resolution.value) if kind == pb.VARIANT_TYPE_OBJECT else resolution.value
            return EvaluationDetails(
                key,
                value,
                resolution.variant,
                reason,
                ErrorCode.UNSPECIFIED,
                "",
                revision,
                stale_age,
                flag.metadata,
            )
        except Exception as exc:  # never raise from an evaluation: the caller's default
            log.exception("evaluation of flag %r failed", key)
            return _failed(key, default, ErrorCode.GENERAL, f"evaluation failed: {exc}", 0, None)

    def stale_age(self) -> float | None:
        """Seconds since the rule set was last known current, if it may be out of date now; else None."""
        age = self._replica.age()
        return None if self._live and age <= self._stale_after else age

    # -- status and listeners --------------------------------------------------------------------------

    def status(self) -> RuleSetStatus:
        replica = self._replica
        return RuleSetStatus(
            self._state, replica.revision, replica.age(), len(replica), self._heartbeat_interval, self._counts
        )

    def flag(self, key: str) -> pb.Flag | None:
        """The flag held for `key` (do not modify it)."""
        entry = self._replica.get(key)
        return None if entry is None else entry.value.proto

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every RuleSetEvent from now on (on the feed's thread or task; it must not
        block); returns the function that removes it."""
        self._listeners = (*self._listeners, listener)

        def remove() -> None:
            self._listeners = tuple(known for known in self._listeners if known is not listener)

        return remove

    def _emit(self, event: RuleSetEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one bad handler must not stop the feed
                log.exception("rule set listener %r failed", listener)

    def _become(self, state: RuleSetState, message: str = "") -> None:
        with self._state_lock:  # the sync client's feed and ticks run on two threads
            if state is self._state:
                return
            self._state = state
        if state is not RuleSetState.NOT_READY:
            self._emit(RuleSetEvent(EventKind(state.value), self._replica.revision, message=message))
        self._notify()

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def settled_after(self, failures: int) -> bool:
        """Whether `start` may stop waiting: the rule set is current, or the stream failed for good, or
        a rule set is held and a stream ended since `failures` were counted."""
        return (
            self._closed
            or self._state in (RuleSetState.READY, RuleSetState.ERROR)
            or (self._replica.revision is not None and self._failures > failures)
        )

    def wait_settled(self, timeout: float | None) -> None:
        """Block until `settled_after` holds for the failures counted now, or `timeout` passes."""
        failures = self._failures
        with self._progress:
            self._progress.wait_for(lambda: self.settled_after(failures), timeout)

    def close(self) -> None:
        """The client closes: a `start` still waiting returns."""
        self._closed = True
        self._notify()

    # -- the feed --------------------------------------------------------------------------------------

    def since_revision(self) -> int:
        """What the next stream asks for: the changes after the held revision (0: a snapshot)."""
        revision = self._replica.revision
        return 0 if revision is None or self._want_snapshot else revision

    def resume_token(self) -> str:
        revision = self._replica.revision
        return "" if revision is None else str(revision)

    def on_connection(self, up: bool, resume_token: str) -> None:
        """The WatchCursor listener: a stream opened or ended. Either way chunks of an unfinished
        snapshot are dropped; an end makes the rule set STALE at once."""
        self._chunks = []
        if up:
            return
        self._failures += 1
        self._live = False
        self._replica.mark_broken()
        if self._replica.revision is not None:
            self._become(RuleSetState.STALE, "the sync stream ended; reconnecting")
        self._notify()

    def feed_failed(self) -> None:
        """The stream failed for good (not UNAVAILABLE): ERROR until it is followed again."""
        self._chunks = []
        self._failures += 1
        self._live = False
        self._replica.mark_broken()
        self._become(RuleSetState.ERROR, "the sync stream failed; retrying")
        self._notify()

    def on_message(self, message: pb.SyncFlagsResponse) -> SyncProgress:
        """Apply one SyncFlags message; returns the revision the stream may resume after."""
        kind = message.WhichOneof("event")
        counts = self._counts
        self._counts = dataclasses.replace(
            counts,
            snapshots=counts.snapshots + (kind == "snapshot" and message.snapshot.last),
            deltas=counts.deltas + (kind == "delta"),
            heartbeats=counts.heartbeats + (kind == "heartbeat"),
            bytes=counts.bytes + message.ByteSize(),
        )
        if kind == "snapshot":
            self._on_chunk(message.snapshot)
        elif kind == "delta":
            self._on_delta(message.delta)
        elif kind == "heartbeat":
            self._on_heartbeat(message.heartbeat)
        return SyncProgress(self.resume_token())

    def _on_chunk(self, chunk: pb.SnapshotChunk) -> None:
        if self._chunks and self._chunks[0].revision != chunk.revision:
            self._chunks = []  # cannot happen on one stream; never mix two snapshots
        self._chunks.extend(chunk.flags)
        if not chunk.last:
            return
        flags, self._chunks = self._chunks, []
        before = {key: entry.value.proto for key, entry in self._replica.items()}
        compiled = _compiled(flags)
        self._replica.apply_snapshot(chunk.revision, ((flag.key, flag) for flag in compiled))
        self._want_snapshot = False
        after = {flag.key: flag.proto for flag in compiled}
        changed = sorted(
            key
            for key in before.keys() | after.keys()
            if (old := before.get(key)) is None or (new := after.get(key)) is None or not _same(old, new)
        )
        self._applied(chunk.revision, changed)

    def _on_delta(self, delta: pb.Delta) -> None:
        compiled = _compiled(delta.upserts)
        upserts = [(flag.key, flag) for flag in compiled]
        if self._replica.apply_delta(delta.revision, upserts, delta.deletes):
            self._applied(delta.revision, sorted({*(key for key, _ in upserts), *delta.deletes}))
        else:
            self._alive()

    def _on_heartbeat(self, heartbeat: pb.Heartbeat) -> None:
        if heartbeat.HasField("heartbeat_interval"):
            interval = heartbeat.heartbeat_interval.ToTimedelta().total_seconds()
            if interval > 0:
                self._heartbeat_interval = interval
                self._stale_after = 2 * interval
        held = self._replica.revision
        if held is None or self._chunks:
            return
        if heartbeat.revision != held:
            # The server says this stream brought a revision the replica does not hold: start over.
            self._want_snapshot = True
            raise ResyncNeeded(f"heartbeat at revision {heartbeat.revision}, replica at {held}")
        self._replica.heartbeat()
        self._alive()

    def _applied(self, revision: int, changed: list[str]) -> None:
        self._dirty = True
        self._alive()
        if changed:
            self._emit(RuleSetEvent(EventKind.CHANGED, revision, tuple(changed)))

    def _alive(self) -> None:
        self._live = True
        self._become(RuleSetState.READY)

    # -- ticks: liveness and the file ------------------------------------------------------------------

    def check(self) -> None:
        """A tick: a READY rule set whose stream fell silent beyond two heartbeat intervals turns STALE."""
        if self._state is RuleSetState.READY and self.stale_age() is not None:
            self._become(RuleSetState.STALE, f"no message from the sync stream for {self._stale_after:g}s")

    def save_due(self) -> bool:
        if self.path is None or self._replica.revision is None:
            return False
        since = time.monotonic() - self._saved_at
        return (self._dirty and since >= SAVE_INTERVAL) or (self._live and since >= REFRESH_INTERVAL)

    def save(self) -> None:
        """Write the rule set to the file (if there is one and a rule set); a failure is logged."""
        path = self.path
        revision, items = self._replica.copy()  # taken together: the flags are those of the revision
        if path is None or revision is None:
            return
        self._dirty, self._saved_at = False, time.monotonic()
        flags = [flag.proto for _, flag in items]
        as_of = time.time() - self._replica.age()
        try:
            _rule_set_file.save(path, revision, as_of, flags)
        except OSError:
            self._dirty = True
            log.warning("could not save the rule set to %s", path, exc_info=True)

    def load(self) -> bool:
        """Start from the saved rule set, STALE with its age, if there is a whole one and no rule set is
        held yet; a bad file is logged and ignored. Returns whether one was loaded."""
        if self.path is None or self._loaded or self._replica.revision is not None:
            return False
        self._loaded = True
        try:
            saved = _rule_set_file.load(self.path)
        except Exception:  # torn, truncated, foreign or unreadable: start without it
            log.warning("ignoring the saved rule set at %s", self.path, exc_info=True)
            return False
        if saved is None:
            return False
        compiled = _compiled(saved.flags)
        self._replica.restore(saved.revision, ((flag.key, flag) for flag in compiled), saved.as_of)
        self._saved_at = time.monotonic()
        self._become(RuleSetState.STALE, f"started from the rule set saved at {self.path}")
        return True


class ResyncNeeded(Exception):
    """The replica and its stream disagree on the revision: the feed restarts with a fresh snapshot."""


def _compiled(flags: Any) -> list[CompiledFlag]:
    """The flags compiled; one that cannot be (never, for flags the server validated) is skipped, logged."""
    compiled = []
    for flag in flags:
        try:
            compiled.append(compile_flag(flag))
        except Exception:
            log.exception("skipping flag %r, which does not compile", flag.key)
    return compiled


def _same(old: pb.Flag, new: pb.Flag) -> bool:
    return old.revision == new.revision and old.etag == new.etag


def _failed(
    key: str,
    default: T,
    code: ErrorCode,
    message: str,
    revision: int,
    stale_age: float | None,
    metadata: Mapping[str, str] | None = None,
) -> EvaluationDetails[T]:
    return EvaluationDetails(
        key,
        default,
        "",
        Reason.ERROR,
        code,
        message,
        revision,
        stale_age,
        metadata if metadata is not None else {},
    )
