"""The session microstate as real processes: it refuses to start without its server key, its sessions
outlive a restart with the same key and end with another, and `microstate up` makes the key (mode 0600)
once, in its data directory."""

from __future__ import annotations

import secrets
import signal
import stat
from pathlib import Path

import grpc
import pytest

from microstate.server.session import KEY_FILE_ENV, KEY_FILE_NAME
from microstate.session.v1 import session_pb2 as pb
from microstate.session.v1.session_pb2_grpc import SessionServiceStub
from tests.runtime.test_cli import running_up
from tests.support.processes import launch, running_server

pytestmark = pytest.mark.process
CALL_TIMEOUT = 5.0


def key_file(path: Path) -> dict[str, str]:
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return {KEY_FILE_ENV: str(path)}


def validate(target: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        try:
            SessionServiceStub(channel).ValidateSession(
                pb.ValidateSessionRequest(token=token), timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def create(target: str) -> pb.CreateSessionResponse:
    with grpc.insecure_channel(target) as channel:
        response: pb.CreateSessionResponse = SessionServiceStub(channel).CreateSession(
            pb.CreateSessionRequest(user_id="ada"), timeout=CALL_TIMEOUT
        )
    return response


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    server = launch(["serve", "session", "--port", "0", "--data-dir", str(tmp_path)], tmp_path)
    try:
        assert server.wait() == 2, server.describe()
    finally:
        server.stop()
    assert KEY_FILE_ENV in server.errors()


def test_serve_refuses_a_key_that_is_too_short(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_text("too short\n")
    env = {KEY_FILE_ENV: str(tmp_path / "short.key")}
    server = launch(["serve", "session", "--port", "0", "--data-dir", str(tmp_path)], tmp_path, env=env)
    try:
        assert server.wait() == 2, server.describe()
    finally:
        server.stop()
    assert "at least 32 bytes" in server.errors()


def test_sessions_outlive_a_restart_with_the_same_key_and_end_with_another(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'session.db'}"
    env = key_file(tmp_path / "session.key")
    with running_server("session", tmp_path, "--store", store, "--drain-seconds", "0", env=env) as server:
        created = create(server.target)
        assert validate(server.target, created.token) == grpc.StatusCode.OK

    with running_server("session", tmp_path, "--store", store, "--drain-seconds", "0", env=env) as server:
        assert validate(server.target, created.token) == grpc.StatusCode.OK

    other = key_file(tmp_path / "other.key")
    with running_server("session", tmp_path, "--store", store, "--drain-seconds", "0", env=other) as server:
        assert validate(server.target, created.token) == grpc.StatusCode.UNAUTHENTICATED
    assert "another server key" in server.errors()  # the cause is in the log, not in the answer


def test_up_makes_the_key_once_and_serves_sessions_with_it(tmp_path: Path) -> None:
    key_path = tmp_path / "data" / KEY_FILE_NAME
    with running_up(tmp_path) as (up, rows, _):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        key = key_path.read_bytes()
        created = create(rows["session"]["ENDPOINT"])
        up.send(signal.SIGINT)
        assert up.wait() == 0, up.describe()

    with running_up(tmp_path) as (_, rows, _):
        assert key_path.read_bytes() == key  # made once: a second `up` keeps every session alive
        assert validate(rows["session"]["ENDPOINT"], created.token) == grpc.StatusCode.OK
