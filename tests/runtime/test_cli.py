"""The `microstate` command: list, health, serve errors, and `up` with real child processes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from microstate.server import registry
from microstate.server.cli import main
from microstate.server.profile import MICROSTATE
from microstate.server.serve import redacted
from tests.support.processes import (
    STOP_TIMEOUT,
    MicrostateProcess,
    health_status,
    json_lines,
    launch,
    pid_alive,
    running_server,
    wait_for,
)

UP_START_TIMEOUT = 40.0


def test_list_prints_every_known_microstate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "DEFAULT"]
    assert [line.split()[0] for line in lines[1:]] == registry.names()
    assert "microstate.profile.v1.ProfileService" in lines[1]


def test_serve_rejects_an_unknown_microstate_and_a_bad_store_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "no-such-microstate"]) == 2
    assert "unknown microstate 'no-such-microstate'" in capsys.readouterr().err
    assert main(["serve", "profile", "--store", "bogus://nowhere", "--port", "0"]) == 2
    assert "--store: unsupported store URL" in capsys.readouterr().err
    assert main(["serve", "profile", "--port", "http"]) == 2
    assert "--port" in capsys.readouterr().err


@pytest.mark.process
def test_health_prints_each_service_and_fails_once_the_server_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_server("profile", tmp_path, "--drain-seconds", "0") as server:
        assert main(["health", "--target", server.target]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
        assert rows == [[name, "SERVING"] for name in ("(server)", *MICROSTATE.service_names)]
        server.send(signal.SIGTERM)
        assert server.wait() == 0, server.describe()
        assert main(["health", "--target", server.target, "--timeout", "0.5"]) == 1
        assert "UNREACHABLE" in capsys.readouterr().out


def read_table(output: str) -> dict[str, dict[str, str]]:
    """Rows of the table `up` prints, by microstate name."""
    lines = output.splitlines()
    header = lines[0].split()
    assert header == ["NAME", "ENDPOINT", "STORE", "HEALTH"], output
    rows = {}
    for line in lines[1:]:
        if "serving; Ctrl-C" in line:
            break
        row = dict(zip(header, line.split(), strict=True))
        rows[row["NAME"]] = row
    return rows


def start_up(tmp_path: Path) -> tuple[MicrostateProcess, dict[str, dict[str, str]], list[int]]:
    """`microstate up` on free ports under tmp_path/data, once its table is out: process, rows, child pids."""
    data_dir = tmp_path / "data"
    up = launch(["up", "--base-port", "0", "--data-dir", str(data_dir), "--log-format", "json"], tmp_path)
    try:
        wait_for(
            lambda: "serving; Ctrl-C" in up.output() or up.process.poll() is not None,
            within=UP_START_TIMEOUT,
            what="`up` to print its table",
        )
        assert up.process.poll() is None, up.describe()
        rows = read_table(up.output())
        pids = [json.loads((data_dir / "run" / f"{name}.json").read_text())["pid"] for name in rows]
    except BaseException:
        up.stop()
        raise
    return up, rows, pids


@contextmanager
def running_up(tmp_path: Path) -> Iterator[tuple[MicrostateProcess, dict[str, dict[str, str]], list[int]]]:
    up, rows, pids = start_up(tmp_path)
    try:
        yield up, rows, pids
    finally:
        up.stop()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.process
def test_up_serves_every_microstate_in_its_own_process_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_up(tmp_path) as (up, rows, child_pids):
        assert sorted(rows) == sorted(registry.names())
        for name, row in rows.items():
            assert row["HEALTH"] == "SERVING"
            assert health_status(row["ENDPOINT"]) == "SERVING", name
            assert row["STORE"] == f"sqlite:///{data_dir.resolve() / f'{name}.db'}"
        assert len(set(child_pids)) == len(rows) and up.pid not in child_pids  # one process each
        assert all(pid_alive(pid) for pid in child_pids)

        up.send(signal.SIGINT)
        assert up.wait() == 0, up.describe()
        assert not [pid for pid in child_pids if pid_alive(pid)], "orphaned microstate processes"
        assert not list((data_dir / "run").glob("*.json"))
        for name in rows:
            child_log = json_lines((data_dir / "logs" / f"{name}.log").read_text())
            assert [record.get("phase") for record in child_log][-1] == "exit", child_log


@pytest.mark.process
def test_children_of_a_killed_up_drain_and_exit_instead_of_living_on(tmp_path: Path) -> None:
    with running_up(tmp_path) as (up, rows, child_pids):
        up.send(signal.SIGKILL)
        up.wait()
        wait_for(
            lambda: not any(pid_alive(pid) for pid in child_pids),
            within=STOP_TIMEOUT,
            what="the children of the killed `up` to exit",
        )
        for name in rows:
            child_log = json_lines((tmp_path / "data" / "logs" / f"{name}.log").read_text())
            assert "drain" in [record.get("phase") for record in child_log], child_log


@pytest.mark.process
def test_up_stops_the_others_and_shows_the_log_when_one_cannot_start(tmp_path: Path) -> None:
    up = launch(["up", "--base-port", "0", "--data-dir", str(tmp_path), "--host", "256.0.0.1"], tmp_path)
    try:
        assert up.wait(timeout=UP_START_TIMEOUT) == 1, up.describe()
    finally:
        up.stop()
    errors = up.errors()
    assert "exited with code 1" in errors
    assert "cannot listen on 256.0.0.1:0" in errors  # the child's own log, shown by `up`


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://app:s3cret@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("sqlite:////data/profile.db", "sqlite:////data/profile.db"),
    ],
)
def test_store_passwords_never_reach_logs_or_the_terminal(url: str, shown: str) -> None:
    assert redacted(url) == shown
