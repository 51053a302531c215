"""Fuzz targets: one server process per (microstate, store), started on first use and shared by every test.

A server that a case killed is started again for the next test (on the same store), so one crash is
reported once, by the case that caused it, and the rest of the suite still runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from microstate.server import registry
from microstate.server.config import ServerConfig
from tests.fuzz.target import TALLY, Target
from tests.support.processes import start_server
from tests.support.redis_server import running_redis_server

STORES = ("sqlite", "redis")


class Targets:
    """Running fuzz targets by (microstate, store); `close` stops them all."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._targets: dict[tuple[str, str], Target] = {}
        self._stack = contextlib.ExitStack()

    def get(self, microstate: str, store: str) -> Target:
        key = (microstate, store)
        target = self._targets.get(key)
        if target is not None and target.server.process.poll() is None:
            return target
        if target is not None:
            target.close()
        url = self._store_url(microstate, store)
        server = start_server(microstate, self._workdir, "--store", url, "--drain-seconds", "0")
        self._stack.callback(server.stop)
        target = Target(
            server,
            url,
            microstate,
            ServerConfig().max_message_bytes,
            registry.get(microstate).settles_within,
        )
        self._stack.callback(target.close)
        self._targets[key] = target
        return target

    def _store_url(self, microstate: str, store: str) -> str:
        if store == "sqlite":
            return f"sqlite:///{self._workdir / f'{microstate}.db'}"
        if store == "redis":
            if not hasattr(self, "_redis"):
                self._redis = self._stack.enter_context(running_redis_server())
            return self._redis.url
        raise ValueError(f"no fuzz store {store!r}")

    def close(self) -> None:
        self._stack.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How the cases were answered, per method (with -v; a fuzz run that is all refusals is shallow)."""
    if not TALLY or terminalreporter.config.get_verbosity() < 1:
        return
    terminalreporter.section("fuzz: answers per method")
    for method in sorted({method for method, _ in TALLY}):
        answers = sorted(((n, answer) for (m, answer), n in TALLY.items() if m == method), reverse=True)
        terminalreporter.write_line(f"{method}: " + ", ".join(f"{answer} {n}" for n, answer in answers))


@pytest.fixture(scope="session")
def fuzz_targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    targets = Targets(tmp_path_factory.mktemp("fuzz"))
    try:
        yield targets
    finally:
        targets.close()
