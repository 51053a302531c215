"""The README's section "Extracting a slice from a monolith" runs as written: its Python example moves the
profile slice out of the demo monolith phase by phase against real flags and profile server processes and
prints what the README shows; then every command of its route, reconcile and migrate blocks runs against the
same stores and monolith and succeeds (the scheduled one until its first report, then SIGTERM)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from microstate.server import registry
from tests.support.processes import (
    REPO,
    MicrostateProcess,
    json_lines,
    launch,
    running_server,
    server_env,
    wait_for,
)

pytestmark = pytest.mark.process

PROFILE_TARGET, FLAGS_TARGET = "127.0.0.1:50051", "127.0.0.1:50053"
PROFILE_STORE, FLAGS_STORE = "sqlite:///data/profile.db", "sqlite:///data/flags.db"


def section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Extracting a slice from a monolith")
    return readme[start : readme.index("\n## ", start)]


def blocks(language: str) -> list[str]:
    """The section's fenced blocks in `language` ("" for a plain block), in order."""
    found: list[str] = []
    opened: str | None = None
    body: list[str] = []
    for line in section().splitlines(keepends=True):
        if opened is None and line.startswith("```"):
            opened, body = line[3:].strip(), []
        elif opened is not None and line.rstrip() == "```":
            if opened == language:
                found.append("".join(body))
            opened = None
        elif opened is not None:
            body.append(line)
    return found


def commands(block: str) -> list[list[str]]:
    """The block's command lines (continuations joined, comments dropped), each as its arguments."""
    lines = (shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines())
    return [line for line in lines if line]


def reported(process: MicrostateProcess) -> None:
    wait_for(lambda: json_lines(process.output()), within=60, what="the scheduled run's first report")


def test_the_serve_commands_use_the_ports_the_example_calls() -> None:
    serve, *_ = blocks("sh")
    assert {tuple(line[:3]) for line in commands(serve) if line[0] == "microstate"} == {
        ("microstate", "serve", "flags"),
        ("microstate", "serve", "profile"),
    }
    assert FLAGS_STORE in serve and PROFILE_STORE in serve
    assert f"127.0.0.1:{registry.get('flags').default_port}" == FLAGS_TARGET
    assert f"127.0.0.1:{registry.get('profile').default_port}" == PROFILE_TARGET


def test_the_example_and_the_commands_run_as_written(tmp_path: Path) -> None:
    [example] = blocks("python")
    printed = blocks("")[0]
    _, *operations = blocks("sh")
    assert PROFILE_TARGET in example and FLAGS_TARGET in example and "/tmp/" in example
    servers = tmp_path / "servers"
    servers.mkdir()
    profile_store, flags_store = f"sqlite:///{servers / 'profile.db'}", f"sqlite:///{servers / 'flags.db'}"

    with (
        running_server("flags", servers, "--store", flags_store, "--drain-seconds", "0") as flags,
        running_server("profile", servers, "--store", profile_store, "--drain-seconds", "0") as profile,
    ):

        def here(text: str) -> str:  # the README's paths and addresses, made this test's
            text = text.replace("/tmp/", f"{tmp_path}/")
            text = text.replace(PROFILE_STORE, profile_store).replace(FLAGS_STORE, flags_store)
            return text.replace(PROFILE_TARGET, profile.target).replace(FLAGS_TARGET, flags.target)

        ran = subprocess.run(
            [sys.executable, "-c", here(example)],
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        canary = re.compile(r"canary reads (\d+) fallbacks 0")
        for shown, got in zip(printed.splitlines(), ran.stdout.splitlines(), strict=True):
            if canary.fullmatch(shown):
                reads = canary.fullmatch(got)
                assert reads and 0 < int(reads[1]) < 40, got  # about half of the 40 reads
            else:
                assert got == shown

        for line in (line for block in operations for line in commands(block)):
            assert line[0] == "microstate", line
            arguments = shlex.split(here(shlex.join(line[1:])))
            process = launch(arguments, tmp_path)
            try:
                if "--every" in arguments:
                    reported(process)
                    process.send(signal.SIGTERM)
                assert process.wait(timeout=60) == 0, process.describe()
            finally:
                process.stop()
