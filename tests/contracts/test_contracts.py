"""The contract gate, inside the test run so CI cannot skip it: buf lint, buf breaking, codegen drift."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean(buf: str) -> None:
    result = run(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_previous_commit(buf: str) -> None:
    result = run(sys.executable, "tools/breaking.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_matches_proto() -> None:
    result = run(sys.executable, "tools/codegen.py", "--check")
    assert result.returncode == 0, result.stderr


def test_drift_check_detects_a_hand_edit(tmp_path: Path) -> None:
    """The drift check must be able to fail: run it on a copy with one generated file edited."""
    copy = tmp_path / "repo"
    for part in ("proto", "generated", "tools"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    stub = next((copy / "generated").rglob("*_pb2.pyi"))
    stub.write_text(stub.read_text() + "\n# hand edit\n")
    result = subprocess.run(
        [sys.executable, "tools/codegen.py", "--check"], cwd=copy, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "differs" in result.stderr
