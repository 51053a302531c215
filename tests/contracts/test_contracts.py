"""The contract gate, inside the test run so CI cannot skip it: buf lint, buf breaking, codegen drift."""

from __future__ import annotations

import os
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


def test_a_break_cannot_be_slipped_under_a_later_commit(tmp_path: Path, buf: str) -> None:
    """Break a released file in one commit, land an unrelated commit on top: the gate still fails."""
    repo = tmp_path / "repo"
    for part in ("proto", "tools"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "release", "--allow-empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "contracts")
    released = repo / "proto/microstate/profile/v1/profile.proto"
    released.write_text(released.read_text().replace("string locale = 3;", "bytes locale = 3;"))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "break")
    (repo / "NOTES").write_text("unrelated\n")
    git("add", "NOTES")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "unrelated")

    env = {k: v for k, v in os.environ.items() if k != "MICROSTATE_BREAKING_AGAINST"}
    result = subprocess.run(
        [sys.executable, "tools/breaking.py"], cwd=repo, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode != 0, result.stdout
    assert "BREAKING" in result.stdout
