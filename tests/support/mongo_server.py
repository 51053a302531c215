"""A real Mongo-wire server for tests: SecantusDB (`secantusd-py`) on a free port with a private data dir.

SecantusDB keeps its data in WiredTiger under `data_dir`, so `restart()` (and `kill()` + `start()`) bring the
data back on the same port. It advertises itself as a single-node replica set, so pymongo allows transactions
and change streams, as with a one-member `mongod --replSet`.

When MICROSTATE_TEST_MONGO_URL is set (a real mongod or replica set), `mongo_target_names()` names that server
too, so the Mongo tests run against both; restart tests skip for the external one (the tests do not own it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pymongo
import pytest
from pymongo.errors import PyMongoError

from tests.support import tools
from tests.support.server_process import ServerProcess, free_port

if TYPE_CHECKING:
    from tests.conformance.conftest import Backend

ENV_EXTERNAL_URL = "MICROSTATE_TEST_MONGO_URL"
"""A mongodb:// URL of a server the Mongo tests also run against (restart tests skip for it)."""
EXECUTABLE = "secantusd-py"
_PROBE_MS = 250


class MongoServer(ServerProcess):
    """One `secantusd-py` subprocess on 127.0.0.1, on a port chosen once, with data kept in `data_dir`."""

    name = EXECUTABLE
    start_timeout = 30.0  # a cold Python start-up on a slow CI machine is slow
    stop_timeout = 15.0

    def __init__(
        self,
        executable: str,
        data_dir: Path,
        port: int | None = None,
        *,
        standalone: bool = False,
        auth: bool = False,
    ) -> None:
        super().__init__(executable, data_dir, port)
        self.standalone = standalone
        """Advertise a standalone server, as a mongod without --replSet: no change streams."""
        self.auth = auth
        """Require authentication (it has no users: every login fails, every unauthenticated command but
        the handshake and ping is refused)."""

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def _launch(self) -> subprocess.Popen[bytes]:
        config = self.data_dir / "secantusd.toml"
        config.touch()  # empty: no secantusd.toml from the working directory or home may change the server
        options = {
            "--host": "127.0.0.1",
            "--port": str(self.port),
            "--storage-path": str(self.data_dir / "db"),
            "--log-level": "WARNING",
            "--config": str(config),
        }
        command = [
            self.executable,
            *(part for option in options.items() for part in option),
            # Fsync the WiredTiger log at every commit, as mongod journals w:majority writes: without it a
            # SIGKILL loses the last acknowledged writes (measured: 5 of 200).
            "--sync-on-commit",
            *(["--standalone"] if self.standalone else []),
            *(["--auth"] if self.auth else []),
        ]
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _answers(self) -> bool:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.url, directConnection=True, serverSelectionTimeoutMS=_PROBE_MS, connectTimeoutMS=_PROBE_MS
        )
        try:
            client.admin.command("ping")
        except PyMongoError:  # refused until it listens
            return False
        finally:
            client.close()
        return True


def mongo_executable() -> str:
    return tools.require(EXECUTABLE, "pip install -r requirements/test.txt installs SecantusDB")


@contextlib.contextmanager
def running_mongo_server(*, standalone: bool = False, auth: bool = False) -> Iterator[MongoServer]:
    """A started MongoServer in a fresh temp dir, always stopped and removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="microstate-mongo-") as data_dir,
        MongoServer(mongo_executable(), Path(data_dir), standalone=standalone, auth=auth) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """One SecantusDB for the whole session. Tests isolate themselves by namespace; a test that stops the
    server should use its own (`running_mongo_server()`), or restart this one and leave it running."""
    with running_mongo_server() as server:
        yield server


# -- targets: the SecantusDB subprocess, plus an external server when the environment names one ------------


@dataclass(frozen=True)
class MongoTarget:
    name: str
    url: str
    restart: Callable[[], None] | None
    """Restart the server (blocking); None for an external server the tests do not own."""


def external_url() -> str | None:
    return os.environ.get(ENV_EXTERNAL_URL) or None


def mongo_target_names() -> list[str]:
    """`secantus`, and `external` when MICROSTATE_TEST_MONGO_URL is set: Mongo tests run against each."""
    return ["secantus", "external"] if external_url() else ["secantus"]


def mongo_target(request: pytest.FixtureRequest, name: str) -> MongoTarget:
    if name == "external":
        url = external_url()
        if url is None:
            pytest.skip(f"{ENV_EXTERNAL_URL} is not set")
        return MongoTarget(name, url, restart=None)
    server: MongoServer = request.getfixturevalue("mongo_server")
    return MongoTarget(name, server.url, restart=server.restart)


@pytest.fixture(params=mongo_target_names())
def mongo_url_target(request: pytest.FixtureRequest) -> MongoTarget:
    """Each Mongo server the tests run against: SecantusDB, and the external one when configured."""
    return mongo_target(request, request.param)


def dead_mongo_url() -> str:
    """A mongodb:// URL nobody answers on (a free port on the loopback)."""
    return f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"


def conformance_backends() -> dict[str, Callable[[pytest.FixtureRequest], Backend]]:
    """Builders for tests/conformance/conftest.py's BACKENDS: "mongo", and "mongo-external" if configured."""

    def build(backend_name: str, target_name: str) -> Callable[[pytest.FixtureRequest], Backend]:
        def backend(request: pytest.FixtureRequest) -> Backend:
            from tests.conformance.conftest import Backend  # imported late: that module imports this one

            target = mongo_target(request, target_name)
            return Backend(backend_name, target.url, dead_url=dead_mongo_url(), restart=target.restart)

        return backend

    names = {"secantus": "mongo", "external": "mongo-external"}
    return {names[target]: build(names[target], target) for target in mongo_target_names()}
