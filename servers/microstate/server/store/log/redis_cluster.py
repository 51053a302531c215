"""The Redis Cluster log store: the Redis log (log/redis.py), its keys and scripts unchanged, on a cluster.

URL: the records store's, `redis+cluster://[user:password@]host1:port,host2:port[/0]` (store/redis_cluster.py:
the listed nodes are where discovery starts); so one URL serves the records and the log role. The URL's query
holds the records store's settings and is not read here.

One hash tag per log, not partitions: a log namespace keeps the single-node layout, every key tagged `{ns}`,
so the whole log lives in one slot on one master and an append stays the single-node script. The log's
contract needs exactly that: positions increase by one per entry across the whole namespace with no hole,
an append's entries are contiguous and land whole or not at all, and a dedupe key is checked and recorded in
the same step as the append. Partitions would each need a share of one position counter (a key every append
goes through, so one slot again) or give up consecutive positions (then a follower could no longer tell a
trimmed log from a gap) and atomic multi-entry appends (a batch would span partitions, i.e. nodes). The
records store partitions because its revisions need only increase per key; a log's positions are one
sequence. What spreads is the logs: each namespace's tag falls in a slot of its own, so several logs
(telemetry's raw events and rollups, other microstates' logs) go to several masters. One log's append rate
is bounded by its master, as one partition's writes are (docs/scaling.md).

Appends, reads and trims go through redis-py's cluster client, which follows MOVED and ASK and maps the
cluster again after a migration or a failover; an append is never resent by it (a lost reply may have
committed: the caller resends with its `dedupe_key`). A follower blocks in XREAD on a connection of its own
to the master that holds the log's slot (a blocking read cannot go through the cluster client's shared
pool without holding one of its connections); when that read fails (the master died, the slot moved), the
follower's usual outage handling reads again through the cluster client, which corrects its slot map, and its
next wait connects to the master named there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from microstate.server.store.base import StoreUnavailable
from microstate.server.store.log.redis import RedisLog, key_base
from microstate.server.store.redis_cluster import _guard as _cluster_guard
from microstate.server.store.redis_cluster import cluster_client, startup_nodes

# KEYS: meta, entries. ARGV: XRANGE's start, count. The meta hash and the entries from one instant, as the
# single-node log's MULTI/EXEC reads them: redis-py's asyncio cluster client runs a transaction's first
# commands on an event loop of its own in a thread, whose connections outlive that loop.
_READ = """
return {redis.call('HMGET', KEYS[1], 'n', 't'), redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])}
"""


class RedisClusterLog(RedisLog):
    """A LogStore on a Redis Cluster (see the module docstring): RedisLog with cluster clients."""

    _guard = staticmethod(_cluster_guard)

    @functools.cached_property
    def _read_script(self) -> Any:
        return self._client.register_script(_READ)

    async def _bookkeeping_and_rows(self, low: str, count: int) -> list[Any]:
        keys = [self._meta_key, self._entries_key]
        bookkeeping, rows = await self._read_script(keys=keys, args=[low, count])
        return [bookkeeping, [(entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in rows]]

    @staticmethod
    def _clients(
        url: str, namespace: str, *, socket_timeout: float, connect_timeout: float, health_check_interval: int
    ) -> tuple[RedisCluster, Callable[..., aioredis.Redis]]:
        """redis-py's cluster client, and followers' clients on the master of the log's slot."""
        nodes, username, password = startup_nodes(url.partition("?")[0])
        name = f"microstate-log-{namespace}"
        client = cluster_client(
            nodes, username, password, name, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        slot = key_slot(key_base(namespace).encode())  # every key of the log has this hash tag
        return client, partial(
            _follower,
            client,
            slot,
            username=username,
            password=password,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )


def _follower(
    client: Any,
    slot: int,
    name: str,
    *,
    socket_timeout: float,
    username: str | None,
    password: str | None,
    connect_timeout: float,
    health_check_interval: int,
) -> aioredis.Redis:
    """A client of a follower's own on the master that holds `slot` now, by `client`'s slot map."""
    try:
        node = client.nodes_manager.get_node_from_slot(slot)
    except (rexc.SlotNotCoveredError, IndexError, KeyError) as exc:  # no map yet, or a hole in it
        raise StoreUnavailable(f"redis cluster: no master known for the log's slot {slot}: {exc}") from exc
    return aioredis.Redis(
        host=node.host,
        port=int(node.port),
        username=username,
        password=password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )


__all__ = ["RedisClusterLog"]
