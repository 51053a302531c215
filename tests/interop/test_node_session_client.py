"""The session contract from a client no one here wrote: session_client.js (Node's @grpc/grpc-js with
session.proto loaded at run time) against a real session server process: tokens of the documented shape,
an idempotent create, scopes, malformed tokens refused with the one reason, concurrent refreshes with one
successor, list paging and the revocation stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.test_node_client import run_client
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.process

CLIENT = Path(__file__).resolve().parent / "session_client.js"
CHECKS = [
    "create",
    "validate",
    "malformed_token_refused",
    "concurrent_refresh_one_successor",
    "list_paging",
    "watch_revocations",
]


def test_node_client_speaks_the_session_contract(node: str, session_server: ServerProcess) -> None:
    code, summary = run_client(node, session_server.target, "interop-node", client=CLIENT)

    failures = {check["name"]: check["error"] for check in summary["checks"] if not check["ok"]}
    assert failures == {}
    assert [check["name"] for check in summary["checks"]] == CHECKS
    assert code == 0
    details = {check["name"]: check["detail"] for check in summary["checks"]}
    assert details["create"]["token_length"] == 85
    assert details["validate"]["reason"] == "INSUFFICIENT_SCOPE"
    assert details["malformed_token_refused"]["messages"] == ["not a valid token of an active session"]
    assert details["watch_revocations"]["code"] == "UNAUTHENTICATED"
    page_sizes = details["list_paging"]["page_sizes"]
    assert sum(page_sizes) == 5 and max(page_sizes) <= 2, page_sizes
