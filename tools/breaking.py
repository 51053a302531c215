"""Run `buf breaking` (FILE rules, from buf.yaml) on proto/ against every earlier published state.

Checking only against the previous commit could be slipped: break a contract in one commit, land another on
top. So the working tree is checked against every commit that changed proto/ or buf.yaml (a contract, once on
main, is released), newest first. With no history to compare (first commit), there is nothing to check.

Works on a shallow clone: it fetches the missing history when a remote is there, else falls back to the
commits it has. Old trees are extracted with `git archive` rather than relying on buf's git input.
MICROSTATE_BREAKING_AGAINST=<ref> checks against that one ref instead.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_PATHS = ("proto", "buf.yaml")


def buf() -> str:
    """buf on PATH, else beside this interpreter (pip's buf-bin in a venv that is not activated)."""
    return shutil.which("buf") or shutil.which("buf", path=sysconfig.get_path("scripts")) or "buf"


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=check)


def unshallow() -> None:
    if git("rev-parse", "--is-shallow-repository", check=False).stdout.strip() == b"true":
        git("fetch", "--quiet", "--unshallow", check=False)


def published_states() -> list[str]:
    """Commits that changed the contracts, newest first; HEAD itself only when the tree has edits on top."""
    if ref := os.environ.get("MICROSTATE_BREAKING_AGAINST"):
        return [ref]
    unshallow()
    commits = git("log", "--format=%H", "HEAD", "--", *CONTRACT_PATHS, check=False).stdout.decode().split()
    dirty = git("status", "--porcelain", "--", *CONTRACT_PATHS).stdout.strip()
    head = git("rev-parse", "HEAD", check=False).stdout.decode().strip()
    return [c for c in commits if dirty or c != head]


def check_against(ref: str) -> int:
    archive = git("archive", "--format=tar", ref, "--", *CONTRACT_PATHS, check=False)
    if archive.returncode != 0:
        print(f"buf breaking: {ref[:12]} has no contracts; skipped")
        return 0
    with tempfile.TemporaryDirectory() as old:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            # filter= came with Python 3.11.4 (Debian 12 has 3.11.2); the tree is our own git archive.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(old, filter="data")
            else:
                tar.extractall(old)
        result = subprocess.run([buf(), "breaking", "--against", old], cwd=ROOT)
    print(f"buf breaking: proto/ against {ref[:12]}: {'ok' if result.returncode == 0 else 'BREAKING'}")
    return result.returncode


def main() -> int:
    states = published_states()
    if not states:
        print("buf breaking: no earlier contracts to compare with; nothing to check")
        return 0
    failures = [ref for ref in states if check_against(ref) != 0]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
