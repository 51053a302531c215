"""The README's telemetry example runs as written against a real telemetry server process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, running_server, server_env

pytestmark = pytest.mark.process

README_TARGET = "127.0.0.1:50055"


def example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Telemetry") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Telemetry section has no Python example"
    assert README_TARGET in match.group(1)
    return match.group(1)


def test_the_telemetry_example_runs_against_a_server(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'telemetry.db'}"
    with running_server("telemetry", tmp_path, "--store", store, "--drain-seconds", "0") as server:
        script = example().replace(README_TARGET, server.target)
        done = subprocess.run(
            [sys.executable, "-c", script], env=server_env(), capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    group, count, p99 = done.stdout.split()
    assert (group, count) == ("m1", "1000")
    assert 0.0105 < float(p99) < 0.0135
