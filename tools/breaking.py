"""Run `buf breaking` on proto/ against the previous commit (FILE rules, from buf.yaml).

The working tree is compared with HEAD when proto/ has uncommitted edits (a
contract author checking their change), otherwise HEAD with HEAD~1 (CI on main).
Works on a shallow clone: it deepens by one commit when the parent is missing,
and extracts the old tree with `git archive` instead of relying on buf's git
input. MICROSTATE_BREAKING_AGAINST=<ref> overrides the reference.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=check)


def has_commit(ref: str) -> bool:
    return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode == 0


def reference() -> str:
    if ref := os.environ.get("MICROSTATE_BREAKING_AGAINST"):
        return ref
    dirty = git("status", "--porcelain", "--", "proto", "buf.yaml").stdout.strip()
    return "HEAD" if dirty else "HEAD~1"


def ensure(ref: str) -> bool:
    if has_commit(ref):
        return True
    if git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true":
        git("fetch", "--quiet", "--deepen=1", check=False)
    return has_commit(ref)


def main() -> int:
    ref = reference()
    if not ensure(ref):
        print(f"buf breaking: no commit {ref} to compare with (first commit?); nothing to check")
        return 0
    archive = git("archive", "--format=tar", ref, "--", "proto", "buf.yaml", check=False)
    if archive.returncode != 0:
        print(f"buf breaking: {ref} has no proto/ yet; nothing to check")
        return 0
    with tempfile.TemporaryDirectory() as old:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(old, filter="data")
        print(f"buf breaking: proto/ against {ref}")
        return subprocess.run(["buf", "breaking", "--against", old], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
