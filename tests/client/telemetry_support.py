"""What the telemetry client tests share: a black-holed server and the telemetry server's own count."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from microstate.client.telemetry.v1 import SyncTelemetryClient, TelemetryClient

MINUTE = 60


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers (nor reads); yields its target."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def refusing_target() -> str:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def server_total(target: str, name: str) -> int:
    """Occurrences of `name` the server holds in its rollups for the last few minutes."""
    end = (int(time.time()) // MINUTE + 1) * MINUTE
    with SyncTelemetryClient(target) as client:
        read = client.query_counts(name, end - 10 * MINUTE, end, step=10 * MINUTE)
    return sum(bucket.count for series in read.value.series for bucket in series.buckets)


def assert_balanced(client: TelemetryClient) -> None:
    stats = client.stats()
    assert stats.balanced, stats
