"""A client no one here wrote: Node's @grpc/grpc-js, with the contracts loaded from proto/ at run time.

profile_client.js builds its stubs from the .proto files (and Google's google/rpc protos for the error
details), never from our Python code, and checks profile v1 and v2 on a real server process: create, get,
update with a field mask and an etag, a stale etag refused with ABORTED / ETAG_MISMATCH, paging, and one
stored profile seen through both versions. It prints a JSON summary, asserted on here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.process

CLIENT = Path(__file__).resolve().parent / "profile_client.js"
RUN_TIMEOUT = 60.0
PER_VERSION = ("create", "get", "update_with_mask_and_etag", "stale_etag_aborted", "list_paging")
CHECKS = [
    *(f"{version}.{check}" for version in ("v1", "v2") for check in PER_VERSION),
    "cross.v2_write_read_by_v1",
    "cross.v1_write_read_by_v2_with_shared_etag",
]


def run_client(
    node: str, target: str, id_prefix: str, *, client: Path = CLIENT
) -> tuple[int, dict[str, Any]]:
    """Run a Node client (profile_client.js unless told); its exit code and JSON summary."""
    command = [node, str(client), target, id_prefix]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    try:
        summary = json.loads(completed.stdout)
    except ValueError:
        pytest.fail(f"no JSON summary (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed.returncode, summary


def test_node_client_speaks_both_contract_versions(node: str, profile_server: ServerProcess) -> None:
    code, summary = run_client(node, profile_server.target, "interop-node")

    failures = {check["name"]: check["error"] for check in summary["checks"] if not check["ok"]}
    assert failures == {}
    assert [check["name"] for check in summary["checks"]] == CHECKS
    assert code == 0
    details = {check["name"]: check["detail"] for check in summary["checks"]}
    for version in ("v1", "v2"):
        refused = details[f"{version}.stale_etag_aborted"]
        assert (refused["code"], refused["reason"], refused["domain"]) == (
            "ABORTED",
            "ETAG_MISMATCH",
            "microstate.dev",
        )
        assert "google.rpc.PreconditionFailure" in refused["detail_types"]
        page_sizes = details[f"{version}.list_paging"]["page_sizes"]
        assert len(page_sizes) >= 3 and sum(page_sizes) == 7, page_sizes


def test_node_client_reports_failed_checks_and_exits_non_zero(
    node: str, profile_server: ServerProcess
) -> None:
    assert run_client(node, profile_server.target, "interop-rerun")[0] == 0

    code, summary = run_client(node, profile_server.target, "interop-rerun")  # every id is taken now

    assert code == 1
    assert summary["failed"] == len(CHECKS) and summary["passed"] == 0
    create = next(check for check in summary["checks"] if check["name"] == "v1.create")
    assert "ALREADY_EXISTS" in create["error"]
