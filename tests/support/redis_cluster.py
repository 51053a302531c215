"""A local Redis Cluster for tests: real redis-server processes in cluster mode, joined by redis-cli.

`running_redis_cluster(masters=3, replicas_per_master=0)` starts one ClusterNodeRedisServer per node (each
with its own port, at most 55535, and data dir), runs `redis-cli --cluster create … --cluster-yes`, and
returns once every node reports `cluster_state:ok` with all 16384 slots covered and every replica's link to
its master up. Nothing sleeps: each step waits on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import tools
from tests.support.processes import wait_for
from tests.support.redis_server import ClusterNodeRedisServer, redis_executable

READY_WITHIN = 30.0
"""Seconds a cluster may take to agree on its slots (a loaded 2-core machine starting six nodes)."""


class RedisCluster:
    """The nodes of one local cluster; `url` names them all, as a redis+cluster:// store URL."""

    def __init__(self, nodes: list[ClusterNodeRedisServer], replicas_per_master: int) -> None:
        self.nodes = nodes
        self.replicas_per_master = replicas_per_master

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def client(self, node: ClusterNodeRedisServer) -> redis.Redis:
        return redis.Redis(port=node.port, socket_connect_timeout=0.5, socket_timeout=2)

    def cli(self, *args: str) -> str:
        """Run `redis-cli` with `args` (e.g. "--cluster", "reshard", …); its output, or CalledProcessError."""
        done = subprocess.run(
            [tools.require("redis-cli", "Debian/Ubuntu: apt-get install redis-tools"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    def create(self) -> None:
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        replicas = str(self.replicas_per_master)
        self.cli("--cluster", "create", *addresses, "--cluster-replicas", replicas, "--cluster-yes")
        self.wait_until_ok(replicas_listed=self.replicas_per_master)

    def info(self, node: ClusterNodeRedisServer, section: str = "cluster") -> dict[str, str]:
        client = self.client(node)
        try:
            raw = client.execute_command("CLUSTER", "INFO") if section == "cluster" else client.info(section)
        finally:
            client.close()
        if isinstance(raw, dict):
            return {key: str(value) for key, value in raw.items()}
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def _ok(self, node: ClusterNodeRedisServer, replicas_listed: int) -> bool:
        try:
            info = self.info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
            replication = self.info(node, "replication")
            client = self.client(node)
            try:
                ranges = client.execute_command("CLUSTER", "SLOTS")
            finally:
                client.close()
        except redis.RedisError:
            return False
        # Clients map the replicas from CLUSTER SLOTS: a node must list them, not just have them.
        listed = all(len(served) - 3 >= replicas_listed for served in ranges)
        linked = replication.get("role") == "master" or replication.get("master_link_status") == "up"
        return listed and linked

    def wait_until_ok(self, within: float = READY_WITHIN, *, replicas_listed: int = 0) -> None:
        """Every running node agrees the cluster is ok, every slot served, every replica linked, and lists
        at least `replicas_listed` replicas for each slot range."""
        wait_for(
            lambda: all(self._ok(node, replicas_listed) for node in self.nodes if node.running),
            within=within,
            what="the Redis Cluster reports cluster_state:ok on every node",
        )

    def masters(self) -> list[ClusterNodeRedisServer]:
        """The running nodes that are masters with slots now."""
        running = [node for node in self.nodes if node.running]
        return [node for node in running if self._is_master(node) and self._has_slots(node)]

    def _is_master(self, node: ClusterNodeRedisServer) -> bool:
        return self.info(node, "replication").get("role") == "master"

    def _has_slots(self, node: ClusterNodeRedisServer) -> bool:
        client = self.client(node)
        try:
            myself = next(
                line for line in client.execute_command("CLUSTER", "NODES").decode().splitlines()
                if "myself" in line
            )  # fmt: skip
        finally:
            client.close()
        return len(myself.split()) > 8  # slot ranges follow the eight fixed fields

    def restart(self) -> None:
        """Stop every node cleanly and start them again (their nodes.conf keeps the cluster); return once
        the cluster is ok again."""
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            node.start()
        self.wait_until_ok()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def running_redis_cluster(masters: int = 3, replicas_per_master: int = 0) -> Iterator[RedisCluster]:
    """A created, healthy cluster of `masters` * (1 + `replicas_per_master`) nodes, killed afterwards."""
    executable = redis_executable()
    with tempfile.TemporaryDirectory(prefix="microstate-redis-cluster-") as root:
        nodes = [
            ClusterNodeRedisServer(executable, Path(root) / f"node{index}")
            for index in range(masters * (1 + replicas_per_master))
        ]
        cluster = RedisCluster(nodes, replicas_per_master)
        try:
            for node in nodes:
                node.data_dir.mkdir()
                node.start()
            cluster.create()
            yield cluster
        finally:
            cluster.kill()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One 3-master cluster (no replicas) for the whole session; tests isolate themselves by namespace."""
    with running_redis_cluster() as cluster:
        yield cluster
