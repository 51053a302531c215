"""Client of the microstate.telemetry.v1 contract.

from microstate.client.telemetry.v1 import TelemetryClient

telemetry = TelemetryClient("localhost:50055")
telemetry.record("inference.latency", 0.042, attributes={"model": "m1"})  # never blocks
telemetry.count("inference.requests")  # pre-aggregated per second with pre_aggregate=True
...
telemetry.close(timeout=1.0)  # never longer than its timeout

`TelemetryQueryClient` (async) and `SyncTelemetryClient` make the raw calls: queries, watches, batches.
"""

from microstate.client.telemetry.v1._client import (
    CONTRACT,
    DEFAULT_TARGET,
    ENV_TARGET,
    SyncTelemetryClient,
    TelemetryQueryClient,
)
from microstate.client.telemetry.v1._recorder import REASONS, Stats, TelemetryClient
from microstate.telemetry.v1.telemetry_pb2 import (
    Bucket,
    Event,
    Histogram,
    QueryAggregatesResponse,
    QueryCountsResponse,
    RecordEventsResponse,
    Series,
    WatchAggregatesResponse,
)

__all__ = [
    "CONTRACT",
    "DEFAULT_TARGET",
    "ENV_TARGET",
    "REASONS",
    "Bucket",
    "Event",
    "Histogram",
    "QueryAggregatesResponse",
    "QueryCountsResponse",
    "RecordEventsResponse",
    "Series",
    "Stats",
    "SyncTelemetryClient",
    "TelemetryClient",
    "TelemetryQueryClient",
    "WatchAggregatesResponse",
]
