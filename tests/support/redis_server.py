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
from typing import TypeVar

import pytest
import redis
import trustme

from tests.support import tools
from tests.support.server_process import ServerProcess, free_port

S = TypeVar("S", bound="RedisServer")


class RedisServer(ServerProcess):
    """redis-server on 127.0.0.1. With `appendfsync always`, acknowledged writes survive even `kill()`."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _listen(self) -> list[str]:
        """The command-line arguments that say where and how the server listens."""
        return ["--port", str(self.port)]

    def _client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)

    def _launch(self) -> subprocess.Popen[bytes]:
        command = [
            self.executable,
            *self._listen(),
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
        client = self._client()
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused while starting, or LOADING while replaying the AOF
            return False
        finally:
            client.close()


class TlsRedisServer(RedisServer):
    """redis-server answering TLS only, its certificate from a throwaway CA (trustme); `url` names the CA.

    The CA also signs a client certificate (`client_cert_path`, `client_key_path`), which a
    MutualTlsRedisServer demands."""

    name = "redis-server-tls"
    require_client_certificates = False

    def __init__(self, executable: str, data_dir: Path) -> None:
        super().__init__(executable, data_dir)
        ca = trustme.CA()
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("microstate-test-client")
        self.ca_path = data_dir / "ca.pem"
        self.cert_path = data_dir / "cert.pem"
        self.key_path = data_dir / "key.pem"
        self.client_cert_path = data_dir / "client-cert.pem"
        self.client_key_path = data_dir / "client-key.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        certificate.cert_chain_pems[0].write_to_path(str(self.cert_path))
        certificate.private_key_pem.write_to_path(str(self.key_path))
        client.cert_chain_pems[0].write_to_path(str(self.client_cert_path))
        client.private_key_pem.write_to_path(str(self.client_key_path))

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_path}"

    def _listen(self) -> list[str]:
        return [
            "--port", "0",  # no plain TCP at all
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.cert_path),
            "--tls-key-file", str(self.key_path),
            "--tls-ca-cert-file", str(self.ca_path),
            "--tls-auth-clients", "yes" if self.require_client_certificates else "no",
        ]  # fmt: skip

    def client(self) -> redis.Redis:
        """A plain redis-py client of this server (the same TLS settings as `url`)."""
        mutual = self.require_client_certificates
        return redis.Redis(
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.ca_path),
            ssl_certfile=str(self.client_cert_path) if mutual else None,
            ssl_keyfile=str(self.client_key_path) if mutual else None,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
        )

    def _client(self) -> redis.Redis:
        return self.client()


class MutualTlsRedisServer(TlsRedisServer):
    """A TlsRedisServer that accepts only clients with a certificate from its CA; `url` presents one."""

    name = "redis-server-mtls"
    require_client_certificates = True

    @property
    def url(self) -> str:
        return f"{super().url}&ssl_certfile={self.client_cert_path}&ssl_keyfile={self.client_key_path}"


def redis_executable() -> str:
    return tools.require("redis-server", "Debian/Ubuntu: apt-get install redis-server")


@contextlib.contextmanager
def _running(kind: type[S]) -> Iterator[S]:
    """A started server of `kind` in a fresh temp dir, always killed and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"microstate-{kind.name}-") as data_dir:
        server = kind(redis_executable(), Path(data_dir))
        try:
            server.start()
            yield server
        finally:
            server.kill()


class ClusterNodeRedisServer(RedisServer):
    """A redis-server in cluster mode (one node, no slots assigned): what a plain redis:// URL must refuse."""

    name = "redis-server-cluster-node"

    def __init__(self, executable: str, data_dir: Path, port: int | None = None) -> None:
        # Its cluster bus listens on port + 10000, so Redis refuses a port above 55535.
        super().__init__(executable, data_dir, port or _free_port_below(MAX_CLUSTER_PORT + 1))

    def _listen(self) -> list[str]:
        nodes = self.data_dir / "nodes.conf"
        return [
            *super()._listen(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(nodes),
            # A dead master is failed over within ~2 s, not the default 15 s (the failover tests wait on it).
            "--cluster-node-timeout", "2000",
            # While a dead master's slots await their replica's promotion, the replica may still serve reads
            # (the setting docs/scaling.md recommends for a microstate).
            "--cluster-allow-reads-when-down", "yes",
        ]  # fmt: skip


MAX_CLUSTER_PORT = 55535


def _free_port_below(limit: int) -> int:
    """A free port under `limit`: the OS picks one until it picks one low enough (most are)."""
    for _ in range(100):
        if (port := free_port()) < limit:
            return port
    raise RuntimeError(f"no free TCP port below {limit} in 100 tries")


def running_redis_server() -> contextlib.AbstractContextManager[RedisServer]:
    return _running(RedisServer)


def running_cluster_node() -> contextlib.AbstractContextManager[ClusterNodeRedisServer]:
    return _running(ClusterNodeRedisServer)


def running_tls_redis_server() -> contextlib.AbstractContextManager[TlsRedisServer]:
    return _running(TlsRedisServer)


def running_mutual_tls_redis_server() -> contextlib.AbstractContextManager[MutualTlsRedisServer]:
    return _running(MutualTlsRedisServer)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests isolate themselves by namespace.

    A test that stops the server should use its own (`running_redis_server()`) or leave this one running
    (`start()` is idempotent, so a fixture can call it to heal after a test that failed mid-outage).
    """
    with running_redis_server() as server:
        yield server
