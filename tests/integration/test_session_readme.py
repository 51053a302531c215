"""The README's session SDK example runs as written against a real session server process, and ends through
its own handler against an address nobody listens on."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from microstate.server.session import KEY_FILE_ENV
from tests.support.processes import REPO, running_server, server_env
from tests.support.server_process import free_port

pytestmark = pytest.mark.process

README_TARGET = "127.0.0.1:50052"


def example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Sessions") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Sessions section has no Python example"
    assert README_TARGET in match.group(1)
    return match.group(1)


def run(target: str) -> subprocess.CompletedProcess[str]:
    script = example().replace(README_TARGET, target)
    return subprocess.run(
        [sys.executable, "-c", script], env=server_env(), capture_output=True, text=True, timeout=60
    )


def test_the_session_example_runs_against_a_server(tmp_path: Path) -> None:
    key = tmp_path / "session.key"
    key.write_text(secrets.token_hex(32))
    env = {KEY_FILE_ENV: str(key)}
    store = f"sqlite:///{tmp_path / 'session.db'}"
    with running_server("session", tmp_path, "--store", store, env=env) as server:
        result = run(server.target)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "u42 Source.LIVE" in result.stdout and "SESSION_INVALID" in result.stdout, output


def test_the_session_example_says_the_service_is_down_without_a_server() -> None:
    result = run(f"127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "the session service is down" in result.stderr, result.stderr
