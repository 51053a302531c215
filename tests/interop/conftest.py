"""Interop fixtures: one real profile server process, and the Node client's npm packages installed once."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import tools
from tests.support.processes import ServerProcess, running_server

INTEROP = Path(__file__).resolve().parent
NPM_TIMEOUT = 300.0


def _installed() -> bool:
    """node_modules was installed by `npm ci` from the current lockfile (npm writes its own copy there)."""
    installed = INTEROP / "node_modules" / ".package-lock.json"
    lockfile = INTEROP / "package-lock.json"
    return installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with tests/interop's pinned packages installed (`npm ci`, once)."""
    hint = "Node.js >= 18 for the Node interop client; Debian: apt-get install nodejs npm"
    node, npm = tools.require("node", hint), tools.require("npm", hint)
    if not _installed():
        installing = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if installing.returncode != 0:
            pytest.fail(f"npm ci failed in {INTEROP}:\n{installing.stdout}\n{installing.stderr}")
    return node


@pytest.fixture(scope="package")
def profile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`microstate serve profile` (v1 and v2) over SQLite, in its own process, on a free port."""
    workdir = tmp_path_factory.mktemp("interop")
    store = f"sqlite:///{workdir / 'profile.db'}"
    with running_server("profile", workdir, "--store", store, "--drain-seconds", "0") as server:
        yield server


@pytest.fixture(scope="package")
def session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`microstate serve session` over SQLite, with its own server key, in its own process, on a free port."""
    workdir = tmp_path_factory.mktemp("interop-session")
    key = workdir / "session.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    store = f"sqlite:///{workdir / 'session.db'}"
    env = {"MICROSTATE_SESSION_KEY_FILE": str(key)}
    with running_server("session", workdir, "--store", store, "--drain-seconds", "0", env=env) as server:
        yield server
