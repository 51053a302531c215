"""`microstate models push|pull|ls|alias` against a real models server process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.conftest import digest_of
from tests.support.processes import ServerProcess, running_server, server_env

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("models-cli")
    with running_server("models", workdir, "--store", f"sqlite:///{workdir / 'models.db'}") as running:
        yield running


def models(server: ServerProcess, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "microstate.server", "models", "--target", server.target]
    return subprocess.run(
        [*command, "--cache", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )


def test_push_pull_ls_and_alias(server: ServerProcess, tmp_path: Path) -> None:
    data = os.urandom(600_000)
    source = tmp_path / "weights.bin"
    source.write_bytes(data)
    cache = tmp_path / "cache"

    pushed = models(
        server, cache, "push", "cli-ranker", str(source), "--alias", "champion", "--metadata", "a=b"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.split() == ["cli-ranker/1", digest_of(data)]
    assert "push cli-ranker" in pushed.stderr  # the progress bar, on stderr

    pulled = models(server, cache, "pull", "cli-ranker@champion", "-o", str(tmp_path / "out.bin"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out.bin").read_bytes() == data

    listed = models(server, cache, "ls", "cli-ranker")
    assert listed.stdout.split() == ["1", digest_of(data), str(len(data)), "champion"]
    assert "cli-ranker" in models(server, cache, "-q", "ls").stdout

    shown = models(server, cache, "alias", "cli-ranker@champion")
    assert shown.returncode == 0 and "-> 1" in shown.stdout and "0->1" in shown.stdout

    refused = models(server, cache, "alias", "cli-ranker@champion", "1", "--etag", 'W/"1"')
    assert refused.returncode == 1 and "ETAG_MISMATCH" in refused.stderr

    missing = models(server, cache, "pull", "cli-ranker@nope")
    assert missing.returncode == 1 and "ALIAS_NOT_FOUND" in missing.stderr
