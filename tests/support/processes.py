"""Microstate servers (and `microstate up`) as real subprocesses, for tests about process behaviour.

Every server binds port 0 and reports the port it got through `--ready-file`, so there are no fixed ports and
no free-port races. Waits are conditions with deadlines. Output goes to files (a full pipe would block the
server); `output()` and `log_records()` read them back. Servers are told this process supervises them
(microstate.server.supervision), so a test run that dies hard does not leave servers behind. No preexec_fn
here on purpose: it forces fork(), and gRPC's fork handlers in this process can abort the forked child.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microstate.server import registry, supervision

REPO = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = [REPO / "generated", REPO / "clients", REPO / "servers", REPO]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.02
_serial = itertools.count()

T = TypeVar("T")


def _polls(within: float, what: str) -> Iterator[None]:
    """Yield until `within` seconds have passed, then fail naming `what`; callers stop on their condition."""
    deadline = time.monotonic() + within
    while True:
        yield
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")


def wait_for(condition: Callable[[], T], *, within: float, what: str) -> T:
    """Poll `condition` until it returns something truthy (returned), or fail after `within` seconds."""
    for _ in _polls(within, what):
        if result := condition():
            return result
        time.sleep(POLL_INTERVAL)  # between checks of the condition, not a synchronisation sleep
    raise AssertionError("unreachable")


async def until(condition: Callable[[], object], *, within: float, what: str) -> None:
    """`wait_for` for async tests: `condition` may be a coroutine function; the loop runs between checks."""
    for _ in _polls(within, what):
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(POLL_INTERVAL)


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment minus MICROSTATE_* settings (tests stay hermetic), running this checkout's code."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MICROSTATE_")}
    env["PYTHONPATH"] = os.pathsep.join(str(folder) for folder in SOURCE_FOLDERS)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return supervision.child_env(env)


async def run_python(code: str, *args: str, within: float) -> tuple[int, str, str]:
    """Run `python -c code *args` with the servers' environment: its exit status, stdout and stderr; fail the
    test if it has not ended within `within` seconds."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=server_env(),
    )  # fmt: skip
    try:
        async with asyncio.timeout(within):
            output, errors = await child.communicate()
    except TimeoutError:
        child.kill()
        await child.wait()
        raise AssertionError(f"a child python did not end within {within}s") from None
    assert child.returncode is not None
    return child.returncode, output.decode(), errors.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among `text`'s lines; other lines (an announcement, a traceback) are skipped."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def pid_alive(pid: int) -> bool:
    """True while `pid` is a live process (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@dataclass
class MicrostateProcess:
    """One `python -m microstate.server ...` subprocess and the files its output went to."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return json_lines(self.errors())

    def phases(self) -> list[str]:
        return [record["phase"] for record in self.log_records() if "phase" in record]

    def describe(self) -> str:
        streams = f"--- stdout ---\n{self.output()}\n--- stderr ---\n{self.errors()}"
        return f"exit code {self.process.poll()}\n{streams}"

    def stop(self) -> None:
        """Make sure the process is gone (test teardown): SIGKILL if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)


def launch(
    arguments: Sequence[str], workdir: Path, *, env: Mapping[str, str] | None = None
) -> MicrostateProcess:
    """Start `python -m microstate.server <arguments>` in `workdir`, output to files there."""
    return launch_python(["-m", "microstate.server", *arguments], workdir, env=env)


def launch_python(
    arguments: Sequence[str], workdir: Path, *, env: Mapping[str, str] | None = None
) -> MicrostateProcess:
    """Start `python <arguments>` in `workdir` with the servers' environment, output to files there."""
    serial = next(_serial)
    stdout_path = workdir / f"process-{serial}.out"
    stderr_path = workdir / f"process-{serial}.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=workdir,
            env=server_env(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    return MicrostateProcess(process, stdout_path, stderr_path)


def health_status(target: str, service: str = "", *, timeout: float = 1.0) -> str:
    """The health status name, or the gRPC code name if the check itself fails (e.g. UNAVAILABLE)."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


@dataclass
class ServerProcess(MicrostateProcess):
    """A `microstate serve` subprocess that has reported where it listens."""

    target: str = ""
    ready: dict[str, Any] = field(default_factory=dict)
    """What it wrote to its ready file (port, pid, metrics_port)."""


SERVE = ("-m", "microstate.server", "serve")
HOOKED_SERVE = ("-m", "tests.support.hooked_server")
"""`microstate serve` with test-only hooks (tests/support/hooked_server.py); its arguments follow."""


def start_listening(
    name: str,
    workdir: Path,
    *flags: str,
    env: Mapping[str, str] | None = None,
    hooks: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> ServerProcess:
    """`microstate serve <name> --port 0 ...` in `workdir`; returns once it listens, whatever its health.

    What the microstate needs prepared (its `prepare` hook, as `microstate up` runs it: a session server's
    key file) is made in `workdir`; `env` overrides what that returns. `hooks`, the test-only flags of
    tests/support/hooked_server.py (e.g. `["--slow-calls", "4"]`), start it through that module instead."""
    prepare = registry.get(name).prepare
    env = {**(prepare(workdir) if prepare else {}), **(env or {})}
    ready_file = workdir / f"{name}-{next(_serial)}.ready.json"
    ready_file.unlink(missing_ok=True)  # a stale file from a reused folder would name an old port
    command = [*HOOKED_SERVE, *hooks] if hooks else [*SERVE]
    arguments = [name, "--port", "0", "--ready-file", str(ready_file), "--data-dir", str(workdir)]
    started = launch_python([*command, *arguments, "--log-format", "json", *flags], workdir, env=env)
    return listening(started, ready_file, name, timeout=timeout)


def start_server(
    name: str,
    workdir: Path,
    *flags: str,
    env: Mapping[str, str] | None = None,
    hooks: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> ServerProcess:
    """`start_listening`, returning once its health reports SERVING."""
    server = start_listening(name, workdir, *flags, env=env, hooks=hooks, timeout=timeout)
    try:
        wait_for(lambda: health_status(server.target) == "SERVING", within=timeout, what=f"{name} SERVING")
    except BaseException:
        server.stop()
        raise
    return server


def listening(
    started: MicrostateProcess, ready_file: Path, name: str, *, timeout: float = START_TIMEOUT
) -> ServerProcess:
    """`started` once it has written `ready_file` ({"port": ...}); stopped, and an error, if it exits
    first or does not write it within `timeout`."""
    server = ServerProcess(started.process, started.stdout_path, started.stderr_path)
    try:
        wait_for(
            lambda: ready_file.exists() or server.process.poll() is not None,
            within=timeout,
            what=f"{name} to write {ready_file.name}",
        )
        if server.process.poll() is not None:
            raise AssertionError(f"{name} exited before it was ready: {server.describe()}")
        server.ready = json.loads(ready_file.read_text())
        server.target = f"127.0.0.1:{server.ready['port']}"
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_server(
    name: str,
    workdir: Path,
    *flags: str,
    env: Mapping[str, str] | None = None,
    hooks: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """`start_server`, and make sure the process is gone afterwards, whatever the test did."""
    server = start_server(name, workdir, *flags, env=env, hooks=hooks)
    try:
        yield server
    finally:
        server.stop()
