"""The README's SDK quick start runs as written against a real server process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, running_server, server_env

pytestmark = pytest.mark.process


def quick_start() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## SDK quick start") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README has no Python quick start"
    return match.group(1)


def test_the_readme_quick_start_runs(tmp_path: Path) -> None:
    code = quick_start()
    assert "127.0.0.1:50051" in code
    with running_server("profile", tmp_path, "--store", f"sqlite:///{tmp_path / 'p.db'}") as server:
        script = code.replace("127.0.0.1:50051", server.target).replace("/tmp/", f"{tmp_path}/")
        result = subprocess.run(
            [sys.executable, "-c", script], env=server_env(), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ETAG_MISMATCH" in result.stdout
