"""`--tracing otlp` and `ClientOptions(tracing=True)`: a server process exports its spans to a real OTLP/gRPC
receiver run by the test, and each of them continues the trace of the SDK call that caused it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microstate.client import ClientOptions
from microstate.client.errors import NotFound
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from microstate.server.cli import main
from tests.support.processes import START_TIMEOUT, ServerProcess, running_server, wait_for

pytestmark = pytest.mark.process


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps every span it is sent, with its resource's service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.spans.extend((attributes.get("service.name", ""), span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, name: str) -> list[tuple[str, Any]]:
        with self._lock:
            return [(service, span) for service, span in self.spans if span.name == name]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None)


@pytest.fixture(scope="module")
def client_spans() -> InMemorySpanExporter:
    """The application's tracer provider, as an application using the SDK would configure it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="module")
def traced_server(
    tmp_path_factory: pytest.TempPathFactory, receiver: tuple[Receiver, int]
) -> Iterator[ServerProcess]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver[1]}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with running_server("profile", tmp_path_factory.mktemp("traced"), "--tracing", "otlp", env=env) as server:
        yield server


GET = "/microstate.profile.v1.ProfileService/GetProfile"


def check_continued(client_spans: InMemorySpanExporter, receiver: Receiver, count: int) -> None:
    """Each client GetProfile span has a server span in the same trace, its child, from microstate-profile."""
    sent = [span for span in client_spans.get_finished_spans() if span.name == GET]
    assert len(sent) == count
    wait_for(lambda: len(receiver.named(GET)) >= count, within=START_TIMEOUT, what=f"{count} server spans")
    received = receiver.named(GET)
    by_trace = {span.trace_id: (service, span) for service, span in received}
    for client_span in sent:
        service, server_span = by_trace[client_span.context.trace_id.to_bytes(16, "big")]
        assert service == "microstate-profile"
        assert server_span.parent_span_id == client_span.context.span_id.to_bytes(8, "big")
    assert not receiver.named("/grpc.health.v1.Health/Check"), "health checks are not traced"


async def test_server_spans_continue_the_async_clients_traces(
    traced_server: ServerProcess, receiver: tuple[Receiver, int], client_spans: InMemorySpanExporter
) -> None:
    client_spans.clear()
    options = ClientOptions(target=traced_server.target, tracing=True)
    async with ProfileClient(options=options) as client:
        await client.create(Profile(user_id="t1"))
        await client.get("t1")
        with pytest.raises(NotFound):
            await client.get("nobody")
    check_continued(client_spans, receiver[0], count=2)


def test_server_spans_continue_the_sync_clients_traces(
    traced_server: ServerProcess, receiver: tuple[Receiver, int], client_spans: InMemorySpanExporter
) -> None:
    client_spans.clear()
    before = len(receiver[0].named(GET))
    options = ClientOptions(target=traced_server.target, tracing=True)
    with SyncProfileClient(options=options) as client:
        client.create(Profile(user_id="t2"))
        client.get("t2")
    sent = [span for span in client_spans.get_finished_spans() if span.name == GET]
    assert len(sent) == 1
    wait_for(lambda: len(receiver[0].named(GET)) > before, within=START_TIMEOUT, what="the server span")
    trace_ids = {span.trace_id for _, span in receiver[0].named(GET)}
    assert sent[0].context.trace_id.to_bytes(16, "big") in trace_ids


def test_tracing_is_refused_at_start_without_opentelemetry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def without_opentelemetry(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_opentelemetry)
    assert main(["serve", "profile", "--tracing", "otlp", "--port", "0", "--data-dir", str(tmp_path)]) == 2
    assert "microstate-server[tracing]" in capsys.readouterr().err
