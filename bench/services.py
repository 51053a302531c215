"""The processes under test, each pinned to the server cores: redis-server, SecantusDB, `microstate serve`
and the bare echo server. Built on the test helpers (tests/support), so benchmarks start servers exactly as
the tests do: free ports, ready files, health SERVING before use, always killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import echo_server as echo_script
from bench import env, source_folders
from microstate.server.session import KEY_FILE_ENV
from tests.support import processes
from tests.support.processes import ServerProcess


class Missing(RuntimeError):
    """A binary a figure needs is not installed; the figure is reported as skipped."""


def require(executable: str, hint: str) -> str:
    path = shutil.which(executable)
    if path is None:
        raise Missing(f"{executable} not on PATH ({hint})")
    return path


@contextlib.contextmanager
def redis(cores: frozenset[int]) -> Iterator[str]:
    """A private redis-server (AOF, appendfsync always, as the tests run it); yields its URL."""
    require("redis-server", "apt-get install redis-server")
    from tests.support.redis_server import running_redis_server

    with running_redis_server() as server:
        env.pin(server.pid, cores)
        yield server.url


@contextlib.contextmanager
def mongo(cores: frozenset[int]) -> Iterator[str]:
    """A private SecantusDB (a Mongo-wire server, single-node replica set); yields its URL."""
    require("secantusd-py", "pip install -r requirements/test.txt")
    from tests.support.mongo_server import running_mongo_server

    with running_mongo_server() as server:
        assert server._process is not None  # MongoServer has no public pid (RedisServer has)
        env.pin(server.pid, cores)
        yield server.url


@contextlib.contextmanager
def microstate_server(
    name: str,
    store_url: str,
    workdir: Path,
    cores: frozenset[int],
    *,
    checkout: Path | None = None,
    environ: dict[str, str] | None = None,
    flags: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """`microstate serve NAME --store URL --port 0` as a subprocess, SERVING and pinned; from `checkout`
    when given, else from the checkout the test helpers come from; `environ` adds to its environment and
    `flags` to its command line."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = dict(environ or {})
    if checkout is not None:
        extra["PYTHONPATH"] = os.pathsep.join(str(f) for f in source_folders(checkout))
    with processes.running_server(
        name,
        workdir,
        "--store",
        store_url,
        "--log-level",
        "warning",
        "--drain-seconds",
        "0",
        *flags,
        env=extra,
    ) as server:
        env.pin(server.pid, cores)
        yield server


def profile_server(
    store_url: str,
    workdir: Path,
    cores: frozenset[int],
    *,
    checkout: Path | None = None,
    flags: Sequence[str] = (),
) -> contextlib.AbstractContextManager[ServerProcess]:
    """The profile server (see `microstate_server`)."""
    return microstate_server("profile", store_url, workdir, cores, checkout=checkout, flags=flags)


def session_server(
    store_url: str, workdir: Path, cores: frozenset[int]
) -> contextlib.AbstractContextManager[ServerProcess]:
    """The session server, with a fresh server key in `workdir` (see `microstate_server`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "session.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    return microstate_server("session", store_url, workdir, cores, environ={KEY_FILE_ENV: str(key)})


@contextlib.contextmanager
def echo_server(
    size: int,
    workdir: Path,
    cores: frozenset[int],
    *,
    redis_url: str | None = None,
    mget_keys: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """bench/echo_server.py answering `size` bytes (fetched from Redis per call when `redis_url` is given,
    with one MGET of `mget_keys` if any), pinned; the ServerProcess's target is where it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis_args = ["--redis", redis_url] if redis_url else []
    if mget_keys:
        keys_file = workdir / "echo.keys"
        keys_file.write_text("\n".join(mget_keys))
        redis_args += ["--mget", str(keys_file)]
    ready = workdir / "echo.ready.json"
    ready.unlink(missing_ok=True)
    arguments = [echo_script.__file__, "--size", str(size), "--ready-file", str(ready), *redis_args]
    server = processes.listening(processes.launch_python(arguments, workdir), ready, "echo")
    try:
        env.pin(server.pid, cores)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def slow_link(upstream: ServerProcess, delay: float, workdir: Path) -> Iterator[ServerProcess]:
    """bench/slow_link.py in front of `upstream`: every chunk held `delay` seconds, in a process of its own
    (not pinned: it is the network, not the server); the ServerProcess's target is the proxy."""
    from bench import slow_link as script

    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "slow-link.ready.json"
    ready.unlink(missing_ok=True)
    port = str(upstream.ready["port"])
    arguments = [script.__file__, "--upstream", port, "--delay", str(delay), "--ready-file", str(ready)]
    link = processes.listening(processes.launch_python(arguments, workdir), ready, "slow link")
    try:
        yield link
    finally:
        link.stop()
