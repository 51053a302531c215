"""A real `redis-server` process for tests: free port, private data dir, restartable.

The server keeps an append-only file fsynced on every write, so `restart()`
(and `kill()` + `start()`) bring the data back: the restart tests rely on it.

`ServerProcess` (tests/support/server_process.py) holds what any server-under-test needs (start, wait until
it answers, stop, kill, restart, skip-or-fail when the binary is missing); `RedisServer` adds only its command
line and readiness probe.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.server_process import ServerProcess, executable_or_skip


class RedisServer(ServerProcess):
    """redis-server on 127.0.0.1. With `appendfsync always`, acknowledged writes survive even `kill()`."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> subprocess.Popen[bytes]:
        command = [
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
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _answers(self) -> bool:
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
    executable = executable_or_skip("redis-server", "Debian/Ubuntu: apt-get install redis-server")
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
