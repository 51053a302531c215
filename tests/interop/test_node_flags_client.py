"""The flags contract from a client no one here wrote: flags_client.js (Node's @grpc/grpc-js with flags.proto
loaded at run time) against a real flags server process: flagd's bucketing vectors, field violations, the
impact of an edit, etags, and a SyncFlags snapshot followed by a delta."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_node_client import run_client
from tests.support.processes import ServerProcess, running_server

pytestmark = pytest.mark.process

CLIENT = Path(__file__).resolve().parent / "flags_client.js"
CHECKS = [
    "create",
    "flagd_vectors",
    "invalid_flag_names_the_field",
    "update_impact",
    "stale_etag_aborted",
    "sync_snapshot_then_delta",
]


@pytest.fixture(scope="module")
def flags_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`microstate serve flags` over SQLite, in its own process, on a free port."""
    workdir = tmp_path_factory.mktemp("interop-flags")
    store = f"sqlite:///{workdir / 'flags.db'}"
    with running_server("flags", workdir, "--store", store, "--drain-seconds", "0") as server:
        yield server


def test_node_client_speaks_the_flags_contract(node: str, flags_server: ServerProcess) -> None:
    code, summary = run_client(node, flags_server.target, "interop-node", client=CLIENT)

    failures = {check["name"]: check["error"] for check in summary["checks"] if not check["ok"]}
    assert failures == {}
    assert [check["name"] for check in summary["checks"]] == CHECKS
    assert code == 0
    details = {check["name"]: check["detail"] for check in summary["checks"]}
    assert details["invalid_flag_names_the_field"]["fields"] == ["flag.rules[0].split.weights[0].variant"]
    assert details["update_impact"]["max_reassigned_fraction"] == 0.25
    assert "google.rpc.PreconditionFailure" in details["stale_etag_aborted"]["detail_types"]
    events = details["sync_snapshot_then_delta"]["events"]
    assert events[-1] == "delta" and "snapshot" in events
