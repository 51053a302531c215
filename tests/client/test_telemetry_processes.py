"""TelemetryClient against a real `microstate serve telemetry` process on Redis that is killed (SIGKILL)
under a hot loop and started again on the same port: no exception reaches the loop, the accounting is
exact throughout, and the server counts every event it acknowledged exactly once. And after fork()."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from microstate.client import BreakerOptions, ClientOptions
from microstate.client.telemetry.v1 import TelemetryClient
from tests.client.telemetry_support import server_total
from tests.support.processes import start_server, wait_for
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.process, pytest.mark.redis]

WITHIN = 60.0


def test_a_killed_and_restarted_server_costs_the_hot_loop_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    flags = ("--store", redis_server.url, "--drain-seconds", "0")
    server = start_server("telemetry", tmp_path, *flags)
    port = server.target.rpartition(":")[2]
    options = ClientOptions(target=server.target, breaker=BreakerOptions(reset_timeout=0.2))
    client = TelemetryClient(options=options, flush_interval=0.02, batch_size=256, buffer_size=20_000)
    errors: list[BaseException] = []
    stop = threading.Event()
    recorded = 0

    def hot_loop() -> None:
        nonlocal recorded
        try:
            while not stop.is_set():
                client.record("inference", 0.01)
                recorded += 1
                if recorded % 1000 == 0:
                    assert client.stats().balanced
        except BaseException as exc:  # the point: nothing may reach the caller
            errors.append(exc)

    loop = threading.Thread(target=hot_loop)
    loop.start()
    try:
        wait_for(lambda: client.stats().sent > 2000, within=WITHIN, what="events sent before the kill")
        server.process.kill()
        server.process.wait()
        sent_at_kill = client.stats().sent
        wait_for(lambda: recorded > sent_at_kill + 5000, within=WITHIN, what="records while it is down")
        server = start_server("telemetry", tmp_path, *flags, "--port", port)
        wait_for(lambda: client.stats().sent > sent_at_kill + 1000, within=WITHIN, what="sending again")
    finally:
        stop.set()
        loop.join()
    try:
        assert client.flush(WITHIN)
        stats = client.stats()
        assert errors == []
        assert stats.balanced and stats.recorded == recorded
        # The loop outruns any server (drops are the oldest, from a full buffer); nothing was given up on.
        assert stats.dropped["rejected"] == stats.dropped["retries_exhausted"] == 0, stats
        wait_for(
            lambda: server_total(server.target, "inference") == stats.sent, within=WITHIN, what="all folded"
        )
    finally:
        client.close(1.0)
        server.stop()


def test_a_forked_child_records_with_its_own_worker(tmp_path: Path, redis_server: RedisServer) -> None:
    server = start_server("telemetry", tmp_path, "--store", redis_server.url, "--drain-seconds", "0")
    try:
        client = TelemetryClient(server.target, flush_interval=0.02)
        client.record("forked", 1.0)
        assert client.flush(WITHIN)
        parent_producer = client.producer_id
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if its own events were all sent
            code = 1
            try:
                client.record("forked", 1.0)
                client.record("forked", 1.0)
                flushed = client.flush(WITHIN)
                stats = client.stats()
                ok = flushed and stats.sent == 2 and stats.recorded == 2
                code = 0 if ok and client.producer_id != parent_producer else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        client.record("forked", 1.0)
        assert client.flush(WITHIN)
        assert client.stats().sent == 2
        wait_for(lambda: server_total(server.target, "forked") == 4, within=WITHIN, what="4 events folded")
        client.close(1.0)
    finally:
        server.stop()
