"""The shared gRPC runtime: one grpc.aio server for one microstate over its opened stores.

Every microstate gets the same frame: the gRPC health service with a status per service name (each of the
microstate's services plus "" for the whole server), server reflection (`--reflection`), message-size and
keepalive limits, TLS and authentication with a scope per method (microstate.server.security; health and
reflection stay open), and a graceful drain.

Start-up, the same rule for every backend: what can never work fails the start, before listening; a store
that is merely out of reach does not. `start` pings every store once (for at most PING_TIMEOUT_SECONDS), then
listens:

- the store refuses its configuration (StoreMisconfigured: wrong or missing credentials, a Redis database
  number the server does not have, a MongoDB without transactions) → `start` raises it, nothing listens;
  so does a port that is taken. (A URL that cannot be used at all, such as an unknown scheme or an SQLite
  URL without a file, fails earlier, in `open_store`; so does an SQLite file that cannot be opened.)
- the store does not answer (connection refused, timeout, Redis loading) → the server listens NOT_SERVING
  and turns SERVING by itself once the store answers, checked every RECOVERY_PING_SECONDS (0.5 s) while it
  does not, every `health_interval_seconds` while it does.

Health keeps following the stores from then on: SERVING while every one answers, NOT_SERVING while one
does not, for whatever reason. We chose to start on an unreachable store over refusing to start because a
server whose backend is briefly down (started before its Redis, a Redis restart, a slow volume) should come
up observable and recover by itself; orchestrators learn the truth from health either way. A
misconfiguration, though, would never recover: better a clear error at start than a server that stays
NOT_SERVING forever.

Drain, in order: every health status → NOT_SERVING (permanently, via `enter_graceful_shutdown`), wait
`drain_seconds` while still serving so load balancers notice, then `server.stop(grace_seconds)`: the
listener closes, every connection gets a GOAWAY, new connections are refused (UNAVAILABLE) and calls in
flight get the grace to finish; one still running when the grace ends fails UNAVAILABLE. At that moment
`stopping` is set, so the microstate's own watch streams end cleanly (clients resume elsewhere from their
last token); other endless streams (a health Watch) hold the stop until the grace ends, then are cancelled.

Calls that race the stop end CANCELLED, and clients retry them. A client that does not follow health
(pick_first, round_robin without health checks) keeps sending on its connection until the GOAWAY reaches
it; gRPC core answers CANCELLED to the calls that arrive meanwhile and to those queued for a handler
(grpc/grpc#41785), and Python cannot send a GOAWAY any earlier (max_connection_age is fixed when the
server is built). No handler saw such a call, so the SDK retries it on another address: a read as after
UNAVAILABLE, and a write too, because write handlers send their response headers before anything else
(microstate.server.commit) and gRPC never retries a call whose headers arrived. A write that may have run
is therefore never sent twice. Rarely, gRPC core leaves a call that arrives at the very instant of the stop
unanswered until the grace ends (then UNAVAILABLE) or its deadline passes: a read is then retried or served
from its snapshot, a write fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from microstate.server.audit.service import SCOPES as AUDIT_SCOPES
from microstate.server.audit.service import SERVICE as AUDIT_SERVICE
from microstate.server.audit.service import AuditServicer
from microstate.server.audit.serving import Auditing
from microstate.server.config import ServerConfig
from microstate.server.handlers import wrapping
from microstate.server.kit import subjects, wire
from microstate.server.metrics import ServerMetrics
from microstate.server.pinning import refuse_unserved_contracts
from microstate.server.registry import Microstate
from microstate.server.security import Security
from microstate.server.store.base import StoreMisconfigured
from microstate.server.store.roles import Stores

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OVERALL = ""
"""The health service name that stands for the whole server."""
PING_TIMEOUT_SECONDS = 3.0
"""A store ping slower than this counts as a failure, so a hung backend cannot freeze the health status."""
RECOVERY_PING_SECONDS = 0.5
"""How often a store that does not answer is pinged, whatever --health-interval-seconds says."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def target(self) -> str:
        """Where a local client dials: a wildcard bind address is reached through loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return str(Endpoint(host, self.port))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core channel arguments for the limits in `config`."""
    options = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", _ms(config.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(config.keepalive_timeout_seconds)),
        ("grpc.keepalive_permit_without_calls", int(config.keepalive_permit_without_calls)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.min_ping_interval_seconds)),
        # gRPC enables SO_REUSEPORT by default on Linux: a second server on a taken port would then share it
        # silently instead of failing. We want the failure.
        ("grpc.so_reuseport", 0),
    ]
    if config.max_connection_age_seconds is not None:
        options += [
            ("grpc.max_connection_age_ms", _ms(config.max_connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", _ms(config.grace_seconds)),
        ]
    return options


class Runtime:
    """One microstate served over its stores. `start`, then `drain` once; the caller owns the stores."""

    def __init__(
        self,
        microstate: Microstate,
        stores: Stores,
        config: ServerConfig,
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        metrics: ServerMetrics | None = None,
        security: Security | None = None,
        auditing: Auditing | None = None,
    ) -> None:
        """`security` defaults to the one `config` describes (ConfigError if its settings do not fit).
        With `auditing`, the slice gets its audited stores and every call is an audited call (audit/)."""
        self.microstate = microstate
        self.security = security if security is not None else Security.from_config(config)
        # A server keeping a ledger also serves it (audit/service.py), behind the guard like the slice.
        scopes = microstate.scopes if auditing is None else {**microstate.scopes, **AUDIT_SCOPES}
        self._guard = self.security.guard(scopes, microstate.service_names, microstate.name)
        self.stores = stores
        self.auditing = auditing
        self.config = config
        self.health = health.aio.HealthServicer()
        self.endpoint: Endpoint | None = None
        self._interceptors = list(interceptors)
        self._metrics = metrics
        self._server: grpc.aio.Server | None = None
        self.stopping = asyncio.Event()
        """Set when the listener closes: open streams end then, so stop(grace) need not wait them out."""
        self._store_answers: bool | None = None
        self._draining = False
        self._monitor: asyncio.Task[None] | None = None
        self._tls_watch: asyncio.Task[None] | None = None

    @property
    def health_names(self) -> tuple[str, ...]:
        audit = () if self.auditing is None else (AUDIT_SERVICE.full_name,)
        return (OVERALL, *self.microstate.service_names, *audit)

    def _build(self) -> grpc.aio.Server:
        options = [*server_options(self.config), *self.microstate.server_options]
        grpc_server = grpc.aio.server(interceptors=self._interceptors, options=options)
        # Every handler added through `measured` is counted and timed (metrics.py), every one the slice adds
        # through `guarded` checks its caller first (security/guard.py): refused calls are counted too.
        measured = grpc_server if self._metrics is None else self._metrics.serving(grpc_server)
        guard = self._guard
        guarded = measured if guard is None else wrapping(measured, guard.wrap)
        # Every call to the slice's methods is an audited call: its writes through the audited stores carry
        # their ledger entries (audit/serving.py). Subject erasure is such a call too.
        auditing = self.auditing
        served, stores = guarded, self.stores
        if auditing is not None:
            served, stores = wrapping(guarded, auditing.wrap), auditing.stores
            wire.add_service(guarded, AUDIT_SERVICE, AuditServicer(auditing.sealers, self.stopping))
        self.microstate.attach(served, stores, stopping=self.stopping)
        if self.microstate.subjects is not None:
            subjects.attach(served, self.microstate.name, self.microstate.subjects, stores)
        # Health and reflection are added past the guard: open to every caller.
        health_pb2_grpc.add_HealthServicer_to_server(self.health, measured)
        if self.config.reflection == "on":
            reflection.enable_server_reflection(
                (*self.health_names[1:], health.SERVICE_NAME, reflection.SERVICE_NAME), measured
            )
        # Last: it answers only what no service added above does, for any path, so past every wrapper (whose
        # caches and metric labels must stay bounded).
        refuse_unserved_contracts(grpc_server, self.microstate.service_names)
        return grpc_server

    async def start(self) -> Endpoint:
        """Listen on the configured host and port (0: any free port) and return where it listens.

        Raises StoreMisconfigured, before listening, if the store refuses its configuration (see above)."""
        if self._server is not None:
            raise RuntimeError("runtime already started")
        for name in self.health_names:
            await self.health.set(name, NOT_SERVING)
        failure = await self._ping_store()
        if isinstance(failure, StoreMisconfigured):
            raise failure
        server = self._build()
        requested = self.microstate.default_port if self.config.port is None else self.config.port
        address = str(Endpoint(self.config.host, requested))
        tls = self.security.tls
        try:
            port = (
                server.add_insecure_port(address)
                if tls is None
                else server.add_secure_port(address, tls.credentials())
            )
        except RuntimeError as exc:  # grpc raises on a taken port or a bad host
            port, reason = 0, f": {exc}"
        else:
            reason = ""  # older grpc releases report failure by returning 0
        if port == 0:
            await server.stop(None)  # else the unstarted server's finaliser schedules a stop on a dead loop
            raise OSError(f"cannot listen on {address}{reason}")
        await server.start()
        self._server = server
        self.endpoint = Endpoint(self.config.host, port)
        await self._show_store_health(failure)
        if self.auditing is not None:
            self.auditing.start()
        self._monitor = asyncio.create_task(self._watch_store(), name=f"{self.microstate.name}-store-health")
        if tls is not None:
            self._tls_watch = asyncio.create_task(tls.watch(self.config.tls_reload_seconds), name="tls-files")
        security = self.security.describe(self.config.host)
        if self.security.authenticates:
            log.info(f"security: {security}", extra={"phase": "security"})
        else:
            log.warning(f"security: {security}", extra={"phase": "security"})
        log.info(
            "serving",
            extra={
                "phase": "serving",
                "endpoint": str(self.endpoint),
                "security": security,
                "services": list(self.health_names[1:]),
                "event_loop": type(asyncio.get_running_loop()).__module__,
            },
        )
        return self.endpoint

    def serving(self) -> dict[str, bool]:
        """Health name -> whether it reports SERVING now (the same for every name: store up, not draining)."""
        serving = bool(self._store_answers) and not self._draining
        return dict.fromkeys(self.health_names, serving)

    def reload_tls(self) -> bool:
        """Take up the TLS files at the next handshake (SIGHUP); False when the server has no TLS or the
        files do not load (logged; the current ones stay)."""
        if self.security.tls is None:
            log.info("SIGHUP ignored: this server has no TLS files to reload", extra={"phase": "tls"})
            return False
        return self.security.tls.reload(force=True)

    async def check_store(self) -> bool:
        """Ping the stores once and set every health status to match; True if all answered."""
        return await self._show_store_health(await self._ping_store())

    async def _ping_store(self) -> Exception | None:
        """Why the store did not answer a ping in time, or None if it did."""
        try:
            await asyncio.wait_for(self.stores.ping(), PING_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure, even a backend bug, means NOT_SERVING, never a crash
            return exc
        return None

    async def _show_store_health(self, failure: Exception | None) -> bool:
        """Health statuses to match a ping's outcome (logged when it changes); True if the store answered."""
        answers = failure is None
        reason = "" if failure is None else f"{type(failure).__name__}: {failure}"
        if answers != self._store_answers:
            self._store_answers = answers
            status = SERVING if answers else NOT_SERVING
            for name in self.health_names:
                await self.health.set(name, status)
            if answers:
                log.info("store answers; health SERVING", extra={"phase": "health"})
            else:
                log.warning(
                    "store does not answer; health NOT_SERVING", extra={"phase": "health", "error": reason}
                )
        return answers

    async def _watch_store(self) -> None:
        while True:
            interval = self.config.health_interval_seconds
            if not self._store_answers:
                # Health is what brings a replica back into its clients' rotation: while the store is
                # down, look often, so a recovery shows at once (a ping to a store that is down is refused
                # at once, or bounded by PING_TIMEOUT_SECONDS).
                interval = min(interval, RECOVERY_PING_SECONDS)
            await asyncio.sleep(interval)
            await self.check_store()

    async def drain(self, hurry: asyncio.Event | None = None) -> None:
        """Report NOT_SERVING, wait the drain period (cut short when `hurry` is set), then stop with grace."""
        server = self._server
        if server is None:
            raise RuntimeError("runtime not started")
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        self._draining = True
        for task in (self._monitor, self._tls_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.health.enter_graceful_shutdown()
        log.info(
            "draining: health NOT_SERVING, still accepting calls",
            extra={"phase": "drain", "drain_seconds": self.config.drain_seconds},
        )
        await _wait_or_timeout(hurry or asyncio.Event(), self.config.drain_seconds)
        log.info(
            "stopping: listener closed, in-flight calls may finish",
            extra={"phase": "stop", "grace_seconds": self.config.grace_seconds},
        )
        self.stopping.set()
        await server.stop(self.config.grace_seconds)
        log.info("stopped: all calls finished or cancelled", extra={"phase": "stopped"})
        if self.auditing is not None:
            await self.auditing.stop()


async def _wait_or_timeout(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
