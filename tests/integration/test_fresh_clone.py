"""The README's `./dev test` on a fresh clone, as CI runs it: a bare PATH, CI=true, and a half-made .venv.

Marked slow: it installs the three packages and the test requirements into a new venv (pip's cache keeps that
to a minute or so). It runs the contract gate, which needs buf from that venv, on a PATH that lacks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO

pytestmark = pytest.mark.slow


def test_dev_test_rebuilds_a_half_made_venv_and_finds_its_tools(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    # What an interrupted `python3 -m venv` leaves: an interpreter, no pip, no ready marker.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    env = {
        "HOME": str(Path.home()),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "CI": "true",
    }
    run = subprocess.run(
        ["./dev", "test", "-p", "no:cacheprovider", "-q", "tests/contracts/test_contracts.py"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.splitlines()[-1]
    assert (clone / ".venv" / ".microstate-ready").exists()
