"""Client options: frozen dataclasses with one docstring per field, DEFAULT_* values and ENV_* names.

Explicit options always win. The environment only fills what is not given: `ClientOptions.from_env(slice)`
reads MICROSTATE_<SLICE>_TARGET / _TIMEOUT / _LATENCY_BUDGET / _SNAPSHOT_PATH (e.g.
MICROSTATE_PROFILE_TARGET), and a client built with options whose `target` is None resolves the target from
MICROSTATE_<SLICE>_TARGET, then the slice's default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_INITIAL_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 2.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0
DEFAULT_SNAPSHOT_MAX_ENTRIES = 10_000
DEFAULT_SNAPSHOT_MAX_AGE = 24 * 3600.0
DEFAULT_SNAPSHOT_FLUSH_INTERVAL = 1.0
DEFAULT_BREAKER_FAILURE_THRESHOLD = 5
DEFAULT_BREAKER_RESET_TIMEOUT = 5.0
DEFAULT_MAX_RECONNECT_BACKOFF = 5.0
DEFAULT_NEAR_CACHE_MAX_STALENESS = 1.0
DEFAULT_KEEPALIVE_TIME = 30.0
DEFAULT_KEEPALIVE_TIMEOUT = 10.0
DEFAULT_NEAR_CACHE_HEARTBEAT_INTERVAL = 2.0
DEFAULT_NEAR_CACHE_MAX_ENTRIES = 10_000

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""The largest response a Microstate server sends (every contract documents it): gRPC's default receive
limit, which the channel keeps. Larger batches are refused by the server and split by the client."""

MAX_ATTEMPTS_LIMIT = 5
"""gRPC core silently caps retryPolicy.maxAttempts at 5; a larger value is refused rather than ignored."""

ENV_TARGET = "MICROSTATE_{slice}_TARGET"
ENV_TIMEOUT = "MICROSTATE_{slice}_TIMEOUT"
ENV_LATENCY_BUDGET = "MICROSTATE_{slice}_LATENCY_BUDGET"
ENV_SNAPSHOT_PATH = "MICROSTATE_{slice}_SNAPSHOT_PATH"

Metadata = tuple[tuple[str, str], ...]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How calls are retried, by gRPC itself (the channel's service config): reads on UNAVAILABLE or
    CANCELLED, writes only on a CANCELLED that proves they never ran (see _channel.py). A write whose answer
    was lost may have been applied: it is never retried.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts including the first: 1 (no retry) to 5 (gRPC's cap). They share the call's deadline."""
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    """Seconds; the n-th retry waits a random time up to min(initial * multiplier**(n-1), max_backoff)."""
    max_backoff: float = DEFAULT_MAX_BACKOFF
    """Seconds; the ceiling of any one backoff."""
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    """Growth of the backoff per retry."""

    def __post_init__(self) -> None:
        _require(
            1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT, f"max_attempts must be 1..{MAX_ATTEMPTS_LIMIT}"
        )
        _require(0 < self.initial_backoff <= self.max_backoff, "need 0 < initial_backoff <= max_backoff")
        _require(self.backoff_multiplier >= 1, "backoff_multiplier must be >= 1")


@dataclass(frozen=True, slots=True)
class SnapshotOptions:
    """The last good value of every key read, served when the service cannot answer."""

    max_entries: int = DEFAULT_SNAPSHOT_MAX_ENTRIES
    """Keys kept in the in-memory LRU (and in the file); 0 turns snapshots off."""
    path: str | None = None
    """A durable snapshot file, loaded at start so a restarted worker starts warm, rewritten atomically
    (temp file + os.replace) in the background and on close. One file per client and contract; a directory
    (existing, or written with a trailing slash) holds one `<contract>.snapshot` file per contract, so
    clients of several contract versions can share one MICROSTATE_<SLICE>_SNAPSHOT_PATH."""
    max_age: float | None = DEFAULT_SNAPSHOT_MAX_AGE
    """Seconds since a value was fetched live beyond which it is no longer served; None: no limit."""
    flush_interval: float = DEFAULT_SNAPSHOT_FLUSH_INTERVAL
    """Seconds between background writes of a changed snapshot to `path`; the hot path never writes."""

    def __post_init__(self) -> None:
        _require(self.max_entries >= 0, "max_entries must be >= 0")
        _require(self.max_age is None or self.max_age > 0, "max_age must be > 0 or None")
        _require(self.flush_interval > 0, "flush_interval must be > 0")


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    """A circuit breaker per client: after repeated availability failures, reads stop calling the
    service and go straight to the snapshot until a probe succeeds."""

    failure_threshold: int | None = DEFAULT_BREAKER_FAILURE_THRESHOLD
    """Consecutive UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED reads (after gRPC's retries) that open the
    breaker; None: no breaker."""
    reset_timeout: float = DEFAULT_BREAKER_RESET_TIMEOUT
    """Seconds the breaker stays open before one probe read is let through (half-open)."""

    def __post_init__(self) -> None:
        _require(
            self.failure_threshold is None or self.failure_threshold >= 1, "failure_threshold must be >= 1"
        )
        _require(self.reset_timeout > 0, "reset_timeout must be > 0")


@dataclass(frozen=True, slots=True)
class NearCacheOptions:
    """An opt-in near-cache of reads: a key's value, once read live, is served from memory (Source.CACHE,
    no call) while a watch of the key range proves it unchanged; the watch's events drop changed keys.
    Off unless given; for slices whose clients follow a watch for it (profile: `get` and `batch_get`)."""

    max_staleness: float = DEFAULT_NEAR_CACHE_MAX_STALENESS
    """Seconds a value may still be served after the watch last proved it current: a broken watch stops
    the cache serving that long after the break, and reads go live. 0: only while the watch is connected."""
    max_entries: int = DEFAULT_NEAR_CACHE_MAX_ENTRIES
    """Keys kept; the least recently used go first."""
    prefix: str = ""
    """The key range cached and watched: keys that start with it ("": every key)."""
    heartbeat_interval: float = DEFAULT_NEAR_CACHE_HEARTBEAT_INTERVAL
    """Seconds between the heartbeats the watch asks the server for. A watch silent for two intervals counts
    as broken even when no connection error says so (a partition), so a value is never served more than
    2 * heartbeat_interval + max_staleness after the watch last proved it current."""

    def __post_init__(self) -> None:
        _require(self.max_staleness >= 0, "max_staleness must be >= 0")
        _require(self.max_entries >= 1, "max_entries must be >= 1")
        _require(1.0 <= self.heartbeat_interval <= 3600, "heartbeat_interval must be 1 to 3600 seconds")


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS for the channel; all fields None means TLS with the system's root certificates."""

    root_certificates: bytes | None = None
    """PEM roots that verify the server; None: the system's."""
    private_key: bytes | None = None
    """PEM client key, for mutual TLS."""
    certificate_chain: bytes | None = None
    """PEM client certificate chain, for mutual TLS."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything a Microstate client is configured with; derive variants with `dataclasses.replace`."""

    target: str | None = None
    """host:port (any gRPC target, e.g. dns:///profile.prod.svc:50051 for every address of a name); None:
    the `replicas`, else MICROSTATE_<SLICE>_TARGET, else the slice's default."""
    replicas: tuple[str, ...] = ()
    """IP:port of each replica of the service, dialled as one channel (gRPC's ipv4:/ipv6: target); for
    names, give a dns:/// `target` instead."""
    load_balancing: str | None = None
    """gRPC's load-balancing policy; None: round_robin when the target can name several addresses (replicas,
    an ipv4:/ipv6: list, dns:), else gRPC's own default (pick_first)."""
    health_checked: bool = True
    """Under round_robin, watch each replica's gRPC health for this service and send calls only to those
    SERVING (gRFC A17), so a draining replica gets no new calls before it stops."""
    timeout: float | None = DEFAULT_TIMEOUT
    """Default deadline in seconds for every unary call, all retries included; None: no deadline.
    Watch streams have no default deadline."""
    latency_budget: float | None = None
    """Seconds a read may take before its snapshot is served instead; only applies when a snapshot exists
    (otherwise the read waits up to its timeout). None: off."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry of idempotent reads on UNAVAILABLE, declared in the channel's service config."""
    snapshot: SnapshotOptions = field(default_factory=SnapshotOptions)
    """The snapshot fallback."""
    breaker: BreakerOptions = field(default_factory=BreakerOptions)
    """The circuit breaker in front of reads."""
    near_cache: NearCacheOptions | None = None
    """The opt-in near-cache of reads kept current by a watch; None: off (every read asks the service)."""
    tls: TlsOptions | None = None
    """TLS settings; None with no `credentials`: plaintext."""
    credentials: grpc.ChannelCredentials | None = None
    """Ready-made channel credentials (e.g. with call credentials composed in); overrides `tls`."""
    metadata: Metadata = ()
    """Metadata sent with every call; per-call metadata is added."""
    token: str | Callable[[], str] | None = None
    """A bearer token (a JWT the servers verify), sent as `authorization: Bearer <token>` with every call. A
    callable is asked at every call attempt and watch reconnect, so a token it refreshes is sent from the next
    call on; it runs on the thread making the call (the event loop for an async client; a sync client's
    background watch thread too): return a cached token and refresh it ahead of its expiry, without blocking.
    Needs TLS (`tls` or `credentials`) unless the target is on loopback: a token sent in clear can be
    replayed by anyone who sees it."""
    max_reconnect_backoff: float = DEFAULT_MAX_RECONNECT_BACKOFF
    """Seconds; caps gRPC's reconnect backoff (default 120 s) so reads go live again soon after the
    service returns."""
    channel_options: tuple[tuple[str, str | int], ...] = ()
    """Extra gRPC channel arguments, applied last."""
    keepalive_time: float | None = DEFAULT_KEEPALIVE_TIME
    """Seconds between HTTP/2 pings while a call or stream is open, so a connection that died without a word
    (a host gone, a partition) fails its streams within keepalive_time + keepalive_timeout and they reconnect,
    instead of hanging until TCP gives up; None: no pings. Microstate servers accept one every 10 s."""
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    """Seconds a ping may go unanswered before the connection counts as dead."""
    tracing: bool = False
    """Trace every call with OpenTelemetry's gRPC instrumentation, under the application's tracer provider,
    sending the trace context to the server (`pip install 'microstate-client[tracing]'`)."""

    def __post_init__(self) -> None:
        _require(self.timeout is None or self.timeout > 0, "timeout must be > 0 or None")
        _require(self.latency_budget is None or self.latency_budget > 0, "latency_budget must be > 0 or None")
        _require(self.max_reconnect_backoff > 0, "max_reconnect_backoff must be > 0")
        _require(self.keepalive_time is None or self.keepalive_time > 0, "keepalive_time must be > 0 or None")
        _require(self.keepalive_timeout > 0, "keepalive_timeout must be > 0")
        _require(all(key == key.lower() for key, _ in self.metadata), "metadata keys must be lowercase")
        _require(not (self.target and self.replicas), "give either target or replicas, not both")
        if self.replicas:
            replicas_target(self.replicas)  # fails early on a name or a missing port

    @classmethod
    def from_env(cls, slice_name: str, environ: Mapping[str, str] | None = None) -> ClientOptions:
        """Defaults, overridden by MICROSTATE_<SLICE>_{TARGET,TIMEOUT,LATENCY_BUDGET,SNAPSHOT_PATH}."""
        env = os.environ if environ is None else environ
        name = slice_name.upper()
        options = cls(target=env.get(ENV_TARGET.format(slice=name)) or None)
        if timeout := env.get(ENV_TIMEOUT.format(slice=name)):
            options = dataclasses.replace(options, timeout=float(timeout))
        if budget := env.get(ENV_LATENCY_BUDGET.format(slice=name)):
            options = dataclasses.replace(options, latency_budget=float(budget))
        if path := env.get(ENV_SNAPSHOT_PATH.format(slice=name)):
            options = dataclasses.replace(options, snapshot=dataclasses.replace(options.snapshot, path=path))
        return options

    def resolve_target(self, slice_name: str, default: str) -> str:
        """The target to dial: this one, else the replicas, else MICROSTATE_<SLICE>_TARGET, else `default`."""
        if self.replicas:
            return replicas_target(self.replicas)
        return self.target or os.environ.get(ENV_TARGET.format(slice=slice_name.upper())) or default


def replicas_target(replicas: Sequence[str]) -> str:
    """One gRPC target for several IP:port addresses, all of one family (gRPC's ipv4:/ipv6: resolvers)."""
    families = set()
    for replica in replicas:
        host, _, port = replica.rpartition(":")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(
                f"replica {replica!r}: not IP:port; for names use target='dns:///NAME:PORT'"
            ) from None
        _require(port.isdigit(), f"replica {replica!r}: no port")
        families.add(address.version)
    _require(len(families) == 1, "replicas must all be IPv4 or all IPv6")
    return f"ipv{families.pop()}:{','.join(replicas)}"


def names_several_addresses(target: str) -> bool:
    """Whether gRPC may resolve `target` to several addresses: a dns: name or an ipv4:/ipv6: list."""
    return target.startswith(("dns:", "ipv4:", "ipv6:"))


def is_loopback_target(target: str) -> bool:
    """True for targets only this machine can reach: loopback addresses, localhost, unix sockets."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    host = target.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_token_source(options: ClientOptions, target: str) -> Callable[[], str] | None:
    """What gives the bearer token of each call, or None when there is none; ValueError when it would be
    sent in clear off this machine."""
    token = options.token
    if token is None:
        return None
    if options.tls is None and options.credentials is None and not is_loopback_target(target):
        raise ValueError(
            f"a bearer token would cross the network in clear to {target}: give ClientOptions.tls (or"
            " credentials), or dial a loopback address"
        )
    if isinstance(token, str):
        _require(bool(token.strip()), "token must not be empty")
        return lambda: token
    return token
