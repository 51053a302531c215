"""The `microstate` command: list, health, serve errors, and `up` with real child processes."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import redis as redis_client

from microstate.server import probe, registry, supervision
from microstate.server.cli import health_exit_code, main
from microstate.server.config import ConfigError
from microstate.server.profile import MICROSTATE
from microstate.server.serve import redacted
from microstate.server.up import OPEN_NOTICE
from tests.support.mongo_server import MongoServer, mongo_executable, running_mongo_server
from tests.support.processes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    MicrostateProcess,
    health_status,
    json_lines,
    launch,
    pid_alive,
    running_server,
    start_listening,
    wait_for,
)
from tests.support.redis_server import (
    RedisServer,
    redis_executable,
    running_cluster_node,
    running_redis_server,
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
        served = sorted([*MICROSTATE.service_names, "microstate.audit.v1.AuditService"])  # the ledger's too
        assert rows == [[name, "SERVING"] for name in ("(server)", *served)]
        server.send(signal.SIGTERM)
        assert server.wait() == 0, server.describe()
        assert main(["health", "--target", server.target, "--timeout", "0.5"]) == 2
        assert "UNREACHABLE" in capsys.readouterr().out


async def test_health_tells_a_failed_call_from_a_listener_that_never_answers() -> None:
    """Exit 3 (as grpc_health_probe) when the server answers but has no health service; exit 2 when a
    listener accepts connections and never speaks HTTP/2 (the check must not hang past its timeout)."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        statuses = await probe.check_all(f"127.0.0.1:{port}", ["some.Service"], rpc_timeout=2.0)
    finally:
        await server.stop(None)
    assert set(statuses.values()) == {probe.RPC_FAILED}
    assert health_exit_code(statuses.values()) == 3

    with socket.create_server(("127.0.0.1", 0)) as silent:
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        statuses = await probe.check_all(target, ["some.Service"], rpc_timeout=0.5)
    assert set(statuses.values()) == {probe.UNREACHABLE}
    assert health_exit_code(statuses.values()) == 2


def test_health_exit_code_reports_the_worst_failure() -> None:
    assert health_exit_code(["SERVING", "SERVING"]) == 0
    assert health_exit_code(["SERVING", "NOT_SERVING"]) == 4
    assert health_exit_code(["NOT_SERVING", probe.UNKNOWN_SERVICE]) == 3
    assert health_exit_code([probe.RPC_FAILED, probe.UNREACHABLE, "NOT_SERVING"]) == 2


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
        assert OPEN_NOTICE in up.output()  # it runs without authentication, and says so

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
    # `up` runs without authentication, so a child told a non-loopback host refuses it (a usage error).
    assert "exited with code 2" in errors
    assert "--host 256.0.0.1: a non-loopback address needs authentication" in errors  # the child's own log


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


# -- start-up: the same rule for every backend (README "Running one microstate", runtime.py) ----------------


def test_version_prints_the_installed_release(tmp_path: Path) -> None:
    process = launch(["--version"], tmp_path)
    assert process.wait() == 0, process.describe()
    assert process.output() == f"microstate {importlib.metadata.version('microstate-server')}\n"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MICROSTATE_PORT", "abc", "expected a port in 0..65535, got 'abc'"),
        ("MICROSTATE_DRAIN_SECONDS", "soon", "expected a non-negative number of seconds, got 'soon'"),
        ("MICROSTATE_EVENT_LOOP", "fast", "expected one of auto, asyncio, uvloop, got 'fast'"),
    ],
)
def test_an_invalid_environment_value_names_its_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    process = launch(["serve", "profile"], tmp_path, env={variable: value})
    assert process.wait() == 2, process.describe()
    assert process.errors() == f"microstate serve: error: {variable}: {expected}\n"


def test_a_supervisor_pid_that_is_not_a_number_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(supervision.ENV_VAR, "up")
    with pytest.raises(ConfigError, match="MICROSTATE_PARENT_PID: expected the supervisor's process id"):
        supervision.exit_with_parent()


def refused_start(workdir: Path, store: str) -> tuple[int, str]:
    """`microstate serve profile --store <store>`, which must exit by itself: its exit code, and the one
    line of its stderr that reports an error (there must be exactly one, and no traceback)."""
    process = launch(["serve", "profile", "--port", "0", "--log-format", "text", "--store", store], workdir)
    try:
        code = process.wait(timeout=STOP_TIMEOUT)
    finally:
        process.stop()
    errors = process.errors()
    assert "Traceback" not in errors and "Event loop is closed" not in errors, errors
    failures = [line for line in errors.splitlines() if "error" in line.lower()]
    assert len(failures) == 1, errors
    return code, failures[0]


@pytest.mark.process
@pytest.mark.redis
def test_a_redis_cluster_node_behind_a_plain_url_fails_the_start(tmp_path: Path) -> None:
    """Not INTERNAL (MOVED) on every call: a redis:// URL speaks to one node, so a cluster node is refused."""
    with running_cluster_node() as node:
        exit_code, line = refused_start(tmp_path, node.url)
    assert exit_code == 1
    assert "is a Redis Cluster node" in line


@pytest.mark.process
@pytest.mark.parametrize(
    ("store", "code", "message"),
    [
        ("sqlite:///", 2, "microstate serve: error: --store: the SQLite store URL 'sqlite:///' names no"),
        ("sqlite:///{tmp}", 1, "cannot open SQLite store {tmp}: unable to open database file"),
        ("sqlite:///{tmp}/gone/p.db", 1, "cannot open SQLite store {tmp}/gone/p.db: directory {tmp}/gone"),
        *[
            pytest.param(*case, marks=pytest.mark.redis)
            for case in [
                ("redis://127.0.0.1:{redis}/999", 1, "refused SELECT while connecting: ERR DB index is"),
                ("redis://:wrong@127.0.0.1:{redis}/0", 1, "redis refused AUTH while connecting"),
                ("redis://nobody:wrong@127.0.0.1:{redis}/0", 1, "WRONGPASS"),
                ("redis://127.0.0.1:{redis}/zero", 2, "--store: bad Redis store URL"),
            ]
        ],
        *[
            pytest.param(*case, marks=pytest.mark.mongo)
            for case in [
                ("mongodb://nobody:wrong@127.0.0.1:{mongo}/", 1, "mongodb refused the store URL's"),
                ("mongodb://127.0.0.1:{mongo}/", 1, "requires authentication"),
                ("mongodb://a@b@127.0.0.1:{mongo}/", 2, "--store: bad MongoDB store URL"),
            ]
        ],
    ],
)
def test_a_store_that_can_never_work_fails_the_start_with_one_line_naming_it(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, code: int, message: str
) -> None:
    """{redis} is the port of a Redis without a password; {mongo} that of a MongoDB that wants one."""
    places: dict[str, object] = {"tmp": tmp_path}
    if "{redis}" in store:
        places["redis"] = request.getfixturevalue("redis_server").port
    if "{mongo}" in store:
        places["mongo"] = request.getfixturevalue("auth_mongo").port
    exit_code, line = refused_start(tmp_path, store.format(**places))
    assert exit_code == code
    assert message.format(**places) in line
    assert "wrong" not in line  # no password is shown


@pytest.mark.process
@pytest.mark.redis
def test_a_redis_that_wants_a_password_the_url_lacks_fails_the_start(tmp_path: Path) -> None:
    with running_redis_server() as redis:
        admin = redis_client.Redis(port=redis.port)
        admin.config_set("requirepass", "secret")
        admin.close()
        exit_code, line = refused_start(tmp_path, redis.url)
    assert exit_code == 1
    assert "NOAUTH" in line


@pytest.fixture(scope="module")
def auth_mongo() -> Iterator[MongoServer]:
    """A Mongo-wire server that requires authentication and has no users."""
    with running_mongo_server(auth=True) as server:
        yield server


@pytest.mark.process
@pytest.mark.parametrize(
    ("database", "executable"),
    [
        pytest.param(RedisServer, redis_executable, marks=pytest.mark.redis, id="redis"),
        pytest.param(MongoServer, mongo_executable, marks=pytest.mark.mongo, id="mongodb"),
    ],
)
def test_a_server_started_before_its_store_serves_once_the_store_is_up(
    tmp_path: Path, database: Callable[[str, Path], RedisServer | MongoServer], executable: Callable[[], str]
) -> None:
    (tmp_path / "store").mkdir()
    store = database(executable(), tmp_path / "store")  # not started yet: nothing listens on its port
    checks = ["--health-interval-seconds", "0.1", "--drain-seconds", "0"]
    server = start_listening("profile", tmp_path, "--store", store.url, *checks)
    try:
        assert health_status(server.target) == "NOT_SERVING"
        store.start()
        wait_for(lambda: health_status(server.target) == "SERVING", within=START_TIMEOUT, what="SERVING")
        server.send(signal.SIGTERM)
        assert server.wait() == 0, server.describe()
    finally:
        server.stop()
        store.kill()
