"""OpenTelemetry traces of every call, off unless `--tracing otlp` (and the `tracing` extra is installed).

A span per call (health checks aside: probes would drown the rest), continuing the caller's trace from the
`traceparent` metadata, exported over OTLP/gRPC in batches. The exporter reads the standard OTEL_* settings
(OTEL_EXPORTER_OTLP_ENDPOINT, headers, OTEL_BSP_*); the service name is microstate-NAME unless
OTEL_SERVICE_NAME says otherwise. Tracing runs as a server interceptor, which costs every call; that is why
it is opt-in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import grpc

from microstate.server.config import ConfigError

TRACING_MODES = ("off", "otlp")
EXTRA_HINT = "pip install 'microstate-server[tracing]'"


@dataclass
class Tracing:
    """The interceptors to serve with, and what to flush at exit."""

    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    provider: Any = None

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()  # exports what is still batched


def tracing(mode: str, microstate: str) -> Tracing:
    if mode == "off":
        return Tracing()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            f"--tracing {mode} needs OpenTelemetry ({exc.name} is missing): {EXTRA_HINT}"
        ) from None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"microstate-{microstate}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    not_health = filters.negate(filters.service_name("grpc.health.v1.Health"))
    # OpenTelemetry's grpc instrumentation has no annotations.
    interceptor = aio_server_interceptor(tracer_provider=provider, filter_=not_health)  # type: ignore[no-untyped-call]
    return Tracing([interceptor], provider)
