"""The logic every Microstate client shares, written once for the async and the sync client.

Each operation is *planned* here without I/O (`_plans.py`): the request, its deadline and metadata, and
what to do with the response or the error (refresh or drop snapshots, feed the circuit breaker, fall
back, raise the typed error). The async and sync clients only perform the call (`_aio.py`, `_sync.py`),
so fallback, breaker and error rules cannot drift apart between the two.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

import grpc

from microstate.client import _batches
from microstate.client._breaker import BreakerState, CircuitBreaker
from microstate.client._channel import ChannelArguments, channel_arguments
from microstate.client._near_cache import NearCache
from microstate.client._options import ClientOptions, Metadata, SnapshotOptions, bearer_token_source
from microstate.client._plans import Answered, Plan, Split, Stream, Unary
from microstate.client._read import BatchRead, Page, Read, Source
from microstate.client._snapshot import Snapshot, SnapshotStore
from microstate.client._stats import ClientStats, Counters
from microstate.client._watch import Change, ConnectionListener, WatchCursor
from microstate.client.errors import (
    Cancelled,
    CircuitOpenError,
    DeadlineExceeded,
    InvalidArgument,
    LatencyBudgetExceeded,
    MicrostateError,
    NoSnapshotError,
    NotFound,
    Unavailable,
    from_grpc_error,
)

CONTRACT_METADATA_KEY = "x-microstate-contract"
"""Metadata key carrying the contract a client is pinned to, e.g. "microstate.profile.v1"."""


class Message(Protocol):
    def SerializeToString(self) -> bytes: ...


M = TypeVar("M", bound=Message)
R = TypeVar("R")
T = TypeVar("T")
O = TypeVar("O")  # noqa: E741 - the outcome a plan produces
C = TypeVar("C", bound=Change)


@dataclass(frozen=True, slots=True)
class Resource(Generic[M]):
    """How the shared machinery handles one message type that reads return."""

    decode: Callable[[bytes], M]
    etag_of: Callable[[M], str]
    key_of: Callable[[M], str]


@dataclass(frozen=True, slots=True)
class Contract:
    """What a client is pinned to: the contract (proto package), its service and its idempotent methods."""

    name: str
    """The proto package, e.g. "microstate.profile.v1"; sent as x-microstate-contract and names snapshots."""
    service: str
    """The fully qualified gRPC service."""
    idempotent_methods: tuple[str, ...]
    """Retried on UNAVAILABLE and CANCELLED: reads, watches, and writes that apply once however often they
    are sent (a request_id); the other writes only on CANCELLED (see _channel.py)."""
    slice_name: str
    """The slice, for MICROSTATE_<SLICE>_* variables."""
    default_target: str
    snapshots: bool = True
    """Whether its clients keep snapshots. A slice whose reads all fail closed keeps none, so nothing of
    it is kept in memory or written to a snapshot file, whatever the options say."""
    channel_options: tuple[tuple[str, int], ...] = ()
    """gRPC channel arguments its clients need beyond the shared ones (ClientOptions.channel_options are
    added after them, so a caller's own win)."""


class Fallback(enum.Enum):
    """What a read does when the service cannot answer it: declared per method by the slice."""

    SNAPSHOT = "snapshot"
    """Serve the key's last good value, marked stale (profiles: a stale answer beats none)."""
    NONE = "none"
    """Fail closed with the typed error; nothing is kept for the key (a session check must not pass on
    an old answer unless the caller opts in to a cache of its own)."""


BUDGET_SHARE_FOR_LIVE_CALL = 0.8
LIVE = Source.LIVE  # a global is cheaper per key than the enum's class attribute


def typed(err: grpc.RpcError) -> MicrostateError:
    """The typed error for `err`, with `err` as its cause even before (or without) being raised."""
    error = from_grpc_error(err)
    error.__cause__ = err
    return error


def raise_typed(err: grpc.RpcError) -> NoReturn:
    raise from_grpc_error(err) from err


def _is_availability_failure(error: MicrostateError) -> bool:
    """The service did not answer; CANCELLED too: a server going away dropped the call (see _channel.py)."""
    return isinstance(error, Unavailable | DeadlineExceeded | Cancelled)


def new_request_id() -> str:
    """A fresh AIP-155 request id for a write, so the service applies it once however often it is sent."""
    return str(uuid.uuid4())


class ClientCore:
    """Options, snapshots, breaker and metadata of one client; plans every call."""

    def __init__(self, contract: Contract, options: ClientOptions | None) -> None:
        self.options = options if options is not None else ClientOptions.from_env(contract.slice_name)
        self.contract = contract
        self.target = self.options.resolve_target(contract.slice_name, contract.default_target)
        snapshot_options = self.options.snapshot if contract.snapshots else SnapshotOptions(max_entries=0)
        self.snapshots = SnapshotStore(contract.name, snapshot_options)
        near_cache = self.options.near_cache
        self.near_cache = NearCache(near_cache) if near_cache is not None else None
        """The opt-in near-cache (ClientOptions.near_cache): `read` and `batch_read` serve from it and fill
        it; the slice's client follows the watch that keeps it current."""
        self.breaker = CircuitBreaker(
            self.options.breaker.failure_threshold, self.options.breaker.reset_timeout
        )
        self.counters = Counters()
        self._metadata: Metadata = ((CONTRACT_METADATA_KEY, contract.name), *self.options.metadata)
        self._token = bearer_token_source(self.options, self.target)
        # One instance for every read the open breaker answers: the hot path allocates no exception.
        self._circuit_open = CircuitOpenError(self.target)

    def channel_arguments(self) -> ChannelArguments:
        contract = self.contract
        shared = channel_arguments(self.options, self.target, contract.service, contract.idempotent_methods)
        return [*contract.channel_options, *shared]

    def metadata(self, extra: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> Metadata:
        if not extra:
            return self._metadata
        pairs = extra.items() if isinstance(extra, Mapping) else extra
        return (*self._metadata, *pairs)

    def authorized(self, metadata: Metadata) -> Metadata:
        """`metadata` with the bearer token added, asked for now: at each call attempt and watch reconnect."""
        if self._token is None:
            return metadata
        return (*metadata, ("authorization", f"Bearer {self._token()}"))

    def timeout(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.options.timeout

    def remember(self, resource: Resource[M], message: M) -> None:
        self.snapshots.put(resource.key_of(message), message.SerializeToString(), resource.etag_of(message))

    # -- reads with fallback -------------------------------------------------------------------------

    def read(
        self,
        resource: Resource[M],
        method: str,
        make_request: Callable[[], object],
        key: str,
        *,
        timeout: float | None,
        latency_budget: float | None,
        metadata: Metadata,
        fallback: Fallback = Fallback.SNAPSHOT,
    ) -> Plan[Read[M]]:
        """A read of one resource, answered from its snapshot when the live call fails and `fallback` is
        SNAPSHOT; with NONE it fails closed (typed errors, no snapshot kept or served)."""
        if fallback is Fallback.NONE:
            return self.read_live(resource, method, make_request(), timeout=timeout, metadata=metadata)
        near_cache, ticket = self.near_cache, None
        if near_cache is not None:
            if (cached := near_cache.serve(key)) is not None:
                self.counters.read_cached()
                return Answered(cached)
            ticket = near_cache.begin_fill()
        snapshot = self.snapshots.get(key)
        if not self.breaker.allow():
            return Answered(self._serve_while_open(resource, key, snapshot))
        deadline, budget = self._read_deadline(timeout, latency_budget, snapshot is not None)

        def on_response(message: M) -> Read[M]:
            self.breaker.record_success()
            self.counters.read_live()
            read = Read(message, LIVE, resource.etag_of(message), time.time())
            self.snapshots.put(
                resource.key_of(message), message.SerializeToString(), read.etag, read.fetched_at
            )
            if near_cache is not None:
                near_cache.fill(resource.key_of(message), ticket, message, read.etag)
            return read

        def on_error(err: grpc.RpcError) -> Read[M]:
            return self._serve(resource, key, snapshot, self._read_failure(err, budget, (key,)))

        # The request is built only now: a read answered by an open breaker never needs it.
        return Unary(method, make_request(), deadline, metadata, on_response, on_error)

    def read_live(
        self,
        resource: Resource[M],
        method: str,
        request: object,
        *,
        timeout: float | None,
        metadata: Metadata,
    ) -> Unary[M, Read[M]]:
        """A read that fails closed: the live answer, or its typed error (CircuitOpenError while the
        breaker is open); no snapshot is kept or served."""
        if not self.breaker.allow():
            self.counters.read_failed()
            raise self._circuit_open

        def on_response(message: M) -> Read[M]:
            self.breaker.record_success()
            self.counters.read_live()
            return Read(message, LIVE, resource.etag_of(message), time.time())

        def on_error(err: grpc.RpcError) -> Read[M]:
            raise self._read_failure(err, None, ()) from err

        return Unary(method, request, self.timeout(timeout), metadata, on_response, on_error)

    def batch_read(
        self,
        resource: Resource[M],
        method: str,
        make_request: Callable[[list[str]], object],
        keys: Iterable[str],
        found_and_missing: Callable[[R], tuple[Iterable[M], Iterable[str]]],
        *,
        timeout: float | None,
        latency_budget: float | None,
        metadata: Metadata,
    ) -> Plan[BatchRead[M]]:
        """A batch read of `keys` (duplicates read once) with snapshot fallback. A batch the server refuses
        as too large for one response is asked for again in parts within the same deadline (_batches.py)."""
        snapshots = self.snapshots.get_many(keys)
        if not snapshots:
            return Answered(BatchRead({}))
        near_cache, ticket = self.near_cache, None
        if near_cache is not None:
            cached = {key: near_cache.serve(key) for key in snapshots}
            if None not in cached.values():  # all or nothing: a partial hit still costs the call
                self.counters.read_cached(len(cached))
                return Answered(BatchRead(cached))  # type: ignore[arg-type]
            ticket = near_cache.begin_fill()
        if not self.breaker.allow():
            return Answered(self._serve_batch(resource, snapshots, self._circuit_open))
        # The budget only applies when every key has a snapshot to serve instead of the live answer.
        all_snapshotted = None not in snapshots.values()
        deadline, budget = self._read_deadline(timeout, latency_budget, all_snapshotted)
        started = time.monotonic()

        def on_response(response: R) -> BatchRead[M]:
            self.breaker.record_success()
            messages, missing = found_and_missing(response)
            # One clock read per answer and each key and etag read once: this is the per-key client CPU
            # of a batch, which bounds BatchGet throughput.
            fetched_at, key_of, etag_of = time.time(), resource.key_of, resource.etag_of
            found = {key_of(msg): Read(msg, LIVE, etag_of(msg), fetched_at) for msg in messages}
            self.counters.read_live(len(found))
            self.snapshots.put_many(
                ((key, read.value.SerializeToString(), read.etag) for key, read in found.items()), fetched_at
            )
            for key in (missing := list(missing)):
                self.snapshots.discard(key)
            if near_cache is not None:
                for key, read in found.items():
                    near_cache.fill(key, ticket, read.value, read.etag)
            return BatchRead(found, missing)

        def left() -> float | None:
            return None if deadline is None else max(0.0, started + deadline - time.monotonic())

        def call(part: list[str], whole: bool) -> Unary[R, BatchRead[M]]:
            def on_error(err: grpc.RpcError) -> BatchRead[M] | Split[BatchRead[M]]:
                parts = _batches.parts_for(typed(err), part)
                if parts is not None:
                    self.breaker.record_success()  # the service answered
                    return Split([functools.partial(call, keys, False) for keys in parts], _batches.combined)
                reason = self._read_failure(err, budget, tuple(part))
                return self._serve_batch(resource, {key: snapshots[key] for key in part}, reason, whole)

            return Unary(method, make_request(part), left(), metadata, on_response, on_error)

        return call(list(snapshots), True)

    def _read_deadline(
        self, timeout: float | None, latency_budget: float | None, has_snapshot: bool
    ) -> tuple[float | None, float | None]:
        """The call's deadline, and the latency budget if that is what the deadline is."""
        deadline = self.timeout(timeout)
        budget = latency_budget if latency_budget is not None else self.options.latency_budget
        if budget is not None and has_snapshot and (deadline is None or budget < deadline):
            # gRPC needs a few milliseconds to deliver an expired deadline, and the snapshot must still be
            # served: the live call gets 80% of the budget so the whole read stays inside it.
            return budget * BUDGET_SHARE_FOR_LIVE_CALL, budget
        return deadline, None

    def _read_failure(
        self, err: grpc.RpcError, budget: float | None, keys: tuple[str, ...]
    ) -> MicrostateError:
        """The fallback reason for a failed read, or raise when the failure is not one to fall back on."""
        error = typed(err)
        if not _is_availability_failure(error):
            self.breaker.record_success()  # the service answered: it is up
            if isinstance(error, NotFound):
                for key in keys:
                    self.snapshots.discard(key)
            self.counters.read_failed(max(1, len(keys)))
            raise error from err
        self.breaker.record_failure()
        if budget is not None and isinstance(error, DeadlineExceeded):
            error = LatencyBudgetExceeded(budget)
            error.__cause__ = err
        return error

    def _serve(
        self, resource: Resource[M], key: str, snapshot: Snapshot | None, reason: MicrostateError
    ) -> Read[M]:
        if snapshot is None:
            self.counters.read_failed()
            raise NoSnapshotError((key,), reason) from reason
        self.counters.read_snapshot()
        return _from_snapshot(resource, snapshot, reason)

    def _serve_while_open(self, resource: Resource[M], key: str, snapshot: Snapshot | None) -> Read[M]:
        """`_serve` for a read the open breaker answers. All of those share one reason object, so a
        snapshot builds its Read once and every later hit returns it."""
        if snapshot is None:
            return self._serve(resource, key, None, self._circuit_open)  # raises NoSnapshotError
        if snapshot.read_while_open is None:
            snapshot.read_while_open = _from_snapshot(resource, snapshot, self._circuit_open)
        self.counters.read_snapshot()
        return snapshot.read_while_open

    def _serve_batch(
        self,
        resource: Resource[M],
        snapshots: dict[str, Snapshot | None],
        reason: MicrostateError,
        whole: bool = True,
    ) -> BatchRead[M]:
        """The keys' snapshots; with none, NoSnapshotError for a whole batch (a part of a split batch
        leaves that to `_batches.combined`)."""
        found = {key: _from_snapshot(resource, entry, reason) for key, entry in snapshots.items() if entry}
        unavailable = [key for key, entry in snapshots.items() if entry is None]
        self.counters.read_snapshot(len(found))
        self.counters.read_failed(len(unavailable))
        if not found and whole:
            raise NoSnapshotError(tuple(snapshots), reason) from reason
        return BatchRead(found, [], unavailable, reason)

    # -- lists and writes: live only -----------------------------------------------------------------

    def list_page(
        self,
        resource: Resource[M],
        method: str,
        request: object,
        page_of: Callable[[R], tuple[Iterable[M], str]],
        *,
        timeout: float | None,
        metadata: Metadata,
    ) -> Unary[R, Page[M]]:
        def on_response(response: R) -> Page[M]:
            items, next_page_token = page_of(response)
            items = list(items)
            key_of, etag_of = resource.key_of, resource.etag_of
            self.snapshots.put_many(
                ((key_of(item), item.SerializeToString(), etag_of(item)) for item in items), time.time()
            )
            return Page(items, next_page_token)

        return Unary(method, request, self.timeout(timeout), metadata, on_response, raise_typed)

    def write(
        self,
        method: str,
        request: object,
        key: str,
        on_success: Callable[[R], O],
        *,
        timeout: float | None,
        metadata: Metadata,
        resend_if_lost: bool = False,
    ) -> Unary[R, O]:
        """A write: never served from a snapshot, retried by gRPC only when it provably never ran
        (_channel.py). NOT_FOUND drops the key's snapshot.

        `resend_if_lost` is for a write the service applies once however often it is sent (a request_id,
        AIP-155, or a token that names the one result): when its answer is lost (UNAVAILABLE, CANCELLED:
        the connection or the server went away, perhaps after the write was applied) it is sent once more,
        within what is left of its deadline, and the answer to that is the write's."""
        deadline = self.timeout(timeout)
        started = time.monotonic()
        near_cache = self.near_cache

        def done(response: R) -> O:
            # Read-your-writes: the key's cached value goes when the write is answered (or may have been
            # applied, on_error), and a read in flight across it is not kept.
            if near_cache is not None:
                near_cache.invalidate(key)
            self.counters.wrote()
            return on_success(response)

        def attempt(resend: bool) -> Unary[R, O]:
            def on_error(err: grpc.RpcError) -> O | Split[O]:
                if near_cache is not None:
                    near_cache.invalidate(key)
                error = typed(err)
                if resend and isinstance(error, Unavailable | Cancelled):
                    return Split([functools.partial(attempt, False)], _only)
                if isinstance(error, NotFound):
                    self.snapshots.discard(key)
                self.counters.write_failed()
                raise error from err

            left = None if deadline is None else max(0.0, started + deadline - time.monotonic())
            return Unary(method, request, left, metadata, done, on_error)

        return attempt(resend_if_lost)

    def check_contract(
        self, method: str, request: object, *, timeout: float | None, metadata: Metadata
    ) -> Unary[Any, None]:
        """A cheap call that proves the server serves the pinned contract: `request` is one the service
        refuses (INVALID_ARGUMENT) or cannot find (NOT_FOUND), so either answer means "served"; any other
        failure (ContractVersionNotServed, Unavailable, ...) is raised typed. No snapshot, no breaker."""

        def on_error(err: grpc.RpcError) -> None:
            error = typed(err)
            if not isinstance(error, InvalidArgument | NotFound):
                raise error from err

        return Unary(method, request, self.timeout(timeout), metadata, lambda _: None, on_error)

    def watch(
        self,
        method: str,
        request_for: Callable[[str], object],
        resume_token: str,
        observe: Callable[[Any], C],
        *,
        timeout: float | None,
        metadata: Metadata,
        listener: ConnectionListener | None = None,
    ) -> Stream[C]:
        """A stream that resumes after UNAVAILABLE or a drain; `observe` keeps snapshots current and
        turns each event into the change the caller gets; `listener` hears when streams open and end
        (see WatchCursor)."""
        cursor = WatchCursor(resume_token, observe, self.options.retry, timeout, listener)
        return Stream(method, request_for, cursor, metadata)

    def close(self) -> None:
        self.snapshots.close()


class ClientBase:
    """What the async and sync client bases share: the pinned contract and the `ClientCore`."""

    CONTRACT: ClassVar[Contract]
    _stub_class: ClassVar[type[Any]]
    """The generated stub class of the contract's service."""

    def __init__(self, target: str | None = None, *, options: ClientOptions | None = None) -> None:
        """Dial `target`, else options.target, else MICROSTATE_<SLICE>_TARGET, else the slice's default.

        The channel connects lazily, on the first call.
        """
        if target is not None:
            options = dataclasses.replace(
                options or ClientOptions.from_env(self.CONTRACT.slice_name), target=target
            )
        self._core = ClientCore(self.CONTRACT, options)

    def _keep_following(self, feed: str, on_failure: Callable[[], None]) -> None:
        """Follow the stream operation named `feed` (one that keeps a cache current) in the background
        until close(), unless it already runs; when it fails for good, call `on_failure` (drop the cache)
        and start it again after the longest retry backoff. The async client runs it as a task on the
        running loop, the sync one in a daemon thread."""
        raise NotImplementedError

    @property
    def target(self) -> str:
        return self._core.target

    @property
    def options(self) -> ClientOptions:
        return self._core.options

    @property
    def breaker_state(self) -> BreakerState:
        """CLOSED normally; OPEN while reads skip the service; HALF_OPEN while one probe is out."""
        return self._core.breaker.state

    def stats(self) -> ClientStats:
        """What this client has read (live, from snapshots, from the near-cache) and written so far."""
        core = self._core
        return core.counters.stats(core.breaker.state, len(core.snapshots))


def _only(outcomes: list[O]) -> O:
    """The outcome of a call sent again as the one part of a `Split`."""
    return outcomes[0]


def _from_snapshot(resource: Resource[M], snapshot: Snapshot, reason: MicrostateError) -> Read[M]:
    entry, value = snapshot.entry, snapshot.decoded
    if value is None:
        # Decoded once, then shared by every read this snapshot serves (see Read.value): decoding on
        # each hit was most of a hit's cost.
        value = snapshot.decoded = resource.decode(entry.payload)
    return Read(value, Source.SNAPSHOT, entry.etag, entry.fetched_at, reason)
