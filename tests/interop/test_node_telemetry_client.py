"""The telemetry contract from a client no one here wrote: telemetry_client.js (Node's @grpc/grpc-js with
telemetry.proto loaded at run time) against a real telemetry server process: partial success, a resent
batch counted once, a malformed batch refused with ErrorInfo, rollup queries and the rollup watch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_node_client import run_client
from tests.support.processes import ServerProcess, running_server

pytestmark = pytest.mark.process

CLIENT = Path(__file__).resolve().parent / "telemetry_client.js"
CHECKS = [
    "record_partial_success",
    "resend_counts_once",
    "malformed_batch_refused",
    "query_aggregates",
    "watch_aggregates",
]


@pytest.fixture(scope="module")
def telemetry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`microstate serve telemetry` over SQLite (records and log in one file each), in its own process."""
    workdir = tmp_path_factory.mktemp("interop-telemetry")
    store = f"sqlite:///{workdir / 'telemetry.db'}"
    with running_server("telemetry", workdir, "--store", store, "--drain-seconds", "0") as server:
        yield server


def test_node_client_speaks_the_telemetry_contract(node: str, telemetry_server: ServerProcess) -> None:
    code, summary = run_client(node, telemetry_server.target, "interop-node", client=CLIENT)

    failures = {check["name"]: check["error"] for check in summary["checks"] if not check["ok"]}
    assert failures == {}
    assert [check["name"] for check in summary["checks"]] == CHECKS
    assert code == 0
    details = {check["name"]: check["detail"] for check in summary["checks"]}
    assert details["query_aggregates"]["groups"] == ["a", "b"]
