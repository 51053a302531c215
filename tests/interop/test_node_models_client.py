"""The models contract from a client no one here wrote: models_client.js (Node's @grpc/grpc-js with
models.proto loaded at run time) against a real models server process: a client-streamed upload, the bytes
read back with the pinned first message, a digest mismatch refused, alias compare-and-set, an offset past
the end, and an alias move seen on the watch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_node_client import run_client
from tests.support.processes import ServerProcess, running_server

pytestmark = pytest.mark.process

CLIENT = Path(__file__).resolve().parent / "models_client.js"
CHECKS = ["upload", "read_back", "digest_mismatch", "alias_cas", "offset_out_of_range", "watch_alias_moves"]


@pytest.fixture(scope="module")
def models_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`microstate serve models` over SQLite and a blob directory, in its own process, on a free port."""
    workdir = tmp_path_factory.mktemp("interop-models")
    store = f"sqlite:///{workdir / 'models.db'}"
    with running_server("models", workdir, "--store", store, "--drain-seconds", "0") as server:
        yield server


def test_node_client_speaks_the_models_contract(node: str, models_server: ServerProcess) -> None:
    code, summary = run_client(node, models_server.target, "interop-node", client=CLIENT)

    failures = {check["name"]: check["error"] for check in summary["checks"] if not check["ok"]}
    assert failures == {}
    assert [check["name"] for check in summary["checks"]] == CHECKS
    assert code == 0
    details = {check["name"]: check["detail"] for check in summary["checks"]}
    assert details["read_back"]["messages"] >= 4
    assert details["alias_cas"]["history"] == 1
