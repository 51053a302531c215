"""A real `redis-server` process for tests: free port, private data dir, restartable.

The server keeps an append-only file fsynced on every write, so `restart()`
(and `kill()` + `start()`) bring the data back: the restart tests rely on it.

`ServerProcess` holds what any server-under-test needs (start, wait until it answers, stop, kill, restart,
skip-or-fail when the binary is missing); `RedisServer` adds only its command line and readiness probe.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

STOP_TIMEOUT = 10.0
_PROBE_INTERVAL = 0.02


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it, so parallel runs don't collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_executable(name: str, install_hint: str) -> str:
    """The path of `name`, or skip the test; when env CI is set, fail instead: CI must not skip silently."""
    executable = shutil.which(name)
    if executable is None:
        message = f"{name} is not on PATH ({install_hint})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is an error rather than a skip", pytrace=False)
        pytest.skip(message)
    return executable


class ServerProcess:
    """A server subprocess on one port chosen once, with its data in `data_dir`, so restarts keep both.

    Subclasses say how to run it (`command`) and how to tell it is ready (`answers`).
    """

    start_timeout = 10.0
    """Seconds the server may take to answer after start (including replaying its data)."""

    def __init__(self, executable: str, data_dir: Path, port: int | None = None) -> None:
        self.executable = executable
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        # Backstop for exits that skip fixture teardown. Not PR_SET_PDEATHSIG: that fires when the *thread*
        # that started the server ends, and tests restart servers from worker threads (asyncio.to_thread).
        atexit.register(self.kill)

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the server serves requests; False (not an exception) while it cannot yet."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The running server's process id (to SIGSTOP it, say)."""
        assert self._process is not None, "the server is not running"
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> None:
        """Start (again) on the same port and data dir; return once the server answers. Idempotent."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        name = Path(self.executable).name
        while not self.answers():
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"{name} exited early ({self._process.returncode}): {self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{name} did not answer within {self.start_timeout}s: {self._log_tail()}")
            time.sleep(_PROBE_INTERVAL)  # the polling interval of this wait, not a synchronisation

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a crash."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RedisServer(ServerProcess):
    """redis-server on 127.0.0.1. With `appendfsync always`, acknowledged writes survive even `kill()`."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused while starting, or LOADING while replaying the AOF
            return False
        finally:
            client.close()


@contextlib.contextmanager
def running_redis_server() -> Iterator[RedisServer]:
    """A started RedisServer in a fresh temp dir, always killed and removed afterwards."""
    executable = find_executable("redis-server", "Debian/Ubuntu: apt-get install redis-server")
    with tempfile.TemporaryDirectory(prefix="microstate-redis-") as data_dir:
        server = RedisServer(executable, Path(data_dir))
        try:
            server.start()
            yield server
        finally:
            server.kill()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests isolate themselves by namespace.

    A test that stops the server should use its own (`running_redis_server()`) or leave this one running
    (`start()` is idempotent, so a fixture can call it to heal after a test that failed mid-outage).
    """
    with running_redis_server() as server:
        yield server
