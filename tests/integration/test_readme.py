"""The README's SDK quick start runs as written: against a real server process twice in a row, and against
an address nobody listens on, where it ends through its own handler; its watch prints change types by name."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.processes import REPO, running_server, server_env, until
from tests.support.server_process import free_port

pytestmark = pytest.mark.process

README_TARGET = "127.0.0.1:50051"
RUN_TIMEOUT = 60.0


def quick_start() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## SDK quick start") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README has no Python quick start"
    code = match.group(1)
    assert README_TARGET in code and "/tmp/" in code
    return code


def run(target: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The quick start, verbatim but for its target and where its snapshot file goes."""
    script = quick_start().replace(README_TARGET, target).replace("/tmp/", f"{tmp_path}/")
    return subprocess.run(
        [sys.executable, "-c", script],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def definitions() -> dict[str, Any]:
    """The quick start's imports and functions, without running it (its last statement)."""
    module = ast.parse(quick_start())
    module.body = [node for node in module.body if not isinstance(node, ast.Try)]
    namespace: dict[str, Any] = {}
    exec(compile(module, "README.md", "exec"), namespace)
    return namespace


async def test_the_quick_start_runs_twice_in_a_row_and_its_watch_names_changes(tmp_path: Path) -> None:
    with running_server("profile", tmp_path, "--store", f"sqlite:///{tmp_path / 'p.db'}") as server:
        for attempt in ("first", "second"):
            result = await asyncio.to_thread(run, server.target, tmp_path)
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{attempt} run: {output}"
            assert "Ada Source.LIVE" in result.stdout and "ETAG_MISMATCH" in result.stdout, output

        follow = definitions()["follow"]
        printed = io.StringIO()
        async with ProfileClient(server.target) as profiles, ProfileClient(server.target) as writer:
            with contextlib.redirect_stdout(printed):
                watching = asyncio.create_task(follow(profiles))

                async def printed_an_update() -> bool:
                    # A watch starts "from now", and when that is cannot be observed: write until it shows.
                    await writer.update(Profile(user_id="u42", locale="en-GB"), ["locale"])
                    return "UPDATED u42 " in printed.getvalue()

                try:
                    await until(printed_an_update, within=10.0, what="follow() to print an update")
                finally:
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching


def test_against_a_dead_address_the_quick_start_ends_through_its_handler(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(f"127.0.0.1:{free_port()}", tmp_path)
    took = time.monotonic() - started
    # The documented message and nothing else: no traceback of an error the README does not handle.
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "the profile service is down\n")
    assert took < RUN_TIMEOUT / 2
