"""Prometheus metrics of one server, on `--metrics-port` (off by default).

RED per method (calls by status code, latency), the latency and errors of every store operation by role, the
streams open per method, and whether each health name reports SERVING. Each server keeps its own registry, so
servers in one process (the tests) never mix their figures.

Calls are measured by wrapping each method handler as it is added to the server (handlers.py), so every
service counts (health and reflection too); stores by a proxy in front of each opened store, so a slice
measures nothing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from microstate.server.handlers import with_behaviour, wrapping
from microstate.server.store.roles import Stores

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds; from a cached read on loopback (~0.2 ms) to a write waiting out a slow store."""


class ServerMetrics:
    """The metrics of one server. `interceptor()` and `measure(stores)` feed it; `serve_http` exposes it."""

    def __init__(self) -> None:
        self._http: Any = None
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "microstate_rpc_calls", "Finished calls", ["service", "method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "microstate_rpc_duration_seconds",
            "From the handler's start to its end (a stream: its whole life)",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streams = Gauge(
            "microstate_rpc_open_streams",
            "Server-streaming calls open",
            ["service", "method"],
            registry=self.registry,
        )
        self.store_latency = Histogram(
            "microstate_store_operation_duration_seconds",
            "Store calls, by store role and operation",
            ["role", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "microstate_store_errors",
            "Store calls that raised, by exception type",
            ["role", "operation", "error"],
            registry=self.registry,
        )

    def serving(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """`server` as services should be added to it, so that every call is measured."""
        return wrapping(server, functools.partial(_measured, self))

    def measure(self, stores: Stores) -> Stores:
        """The same stores, each behind a proxy that times its coroutine methods."""
        return Stores({role.name: (role, _MeasuredStore(store, role.name, self)) for role, store in stores})

    def expose(self, health: Callable[[], dict[str, bool]], host: str, port: int) -> int:
        """Serve /metrics on host:port (0: a free port) from a daemon thread, with `health()` (health name ->
        SERVING?) read at every scrape; returns the port."""
        self.registry.register(_HealthCollector(health))
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        port = self._http.server_port
        log.info("metrics served", extra={"phase": "metrics", "url": f"http://{host}:{port}/metrics"})
        return port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _HealthCollector(Collector):
    def __init__(self, health: Callable[[], dict[str, bool]]) -> None:
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "microstate_health_serving", "1 while the health name reports SERVING", labels=["service"]
        )
        for name, serving in self._health().items():
            family.add_metric([name or "(server)"], 1.0 if serving else 0.0)
        yield family


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if error is not None and not isinstance(error, grpc.aio.AbortError) else "OK"


def _measured(metrics: ServerMetrics, path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler`, counting its calls by code, timing them, and counting its open response streams."""
    service, _, method = path.lstrip("/").rpartition("/")
    calls = functools.partial(metrics.calls.labels, service, method)
    latency = metrics.latency.labels(service, method)
    streams = metrics.streams.labels(service, method)
    codes: dict[str, Any] = {}

    def finish(started: float, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        latency.observe(time.perf_counter() - started)
        code = _code_of(context, error)
        counter = codes.get(code)
        if counter is None:
            counter = codes[code] = calls(code)
        counter.inc()

    def unary_response(behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(started, context, error)

        return measured

    def streamed_response(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behaviour):  # writes with context.write, returns at the end
            written = unary_response(behaviour)

            async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with streams.track_inprogress():
                    return await written(request, context)

            return counted

        async def measured(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            error: BaseException | None = None
            streams.inc()
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                streams.dec()
                finish(started, context, error)

        return measured

    return with_behaviour(handler, unary_response, streamed_response)


class _MeasuredStore:
    """Forwards everything to `store`; its coroutine methods are timed and their failures counted."""

    def __init__(self, store: Any, role: str, metrics: ServerMetrics) -> None:
        self._store = store
        self._role = role
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        measured = _timed(attribute, self._role, name, self._metrics)
        setattr(self, name, measured)  # found directly from now on, without __getattr__
        return measured


def _timed(operation: Callable[..., Awaitable[Any]], role: str, name: str, metrics: ServerMetrics) -> Any:
    latency = metrics.store_latency.labels(role, name)
    errors = functools.partial(metrics.store_errors.labels, role, name)

    @functools.wraps(operation)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await operation(*args, **kwargs)
        except Exception as exc:
            errors(type(exc).__name__).inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)

    return timed
