"""The Redis Cluster store's fast path: one multiplexed connection per master (redis_pipeline.py).

redis-py's cluster client checks a pooled connection out of the slot's node for every command: measured
(bench SC) at about 4x the CPU of the single-node store's multiplexed path per Get or Update. This sends
the hot commands (GET, MGET, the write scripts) straight to the master redis-py's slot map names, over a
RedisPipeline of that master's own, and leaves everything else to redis-py: when the fast path meets a
redirect (MOVED, ASK), a slot mid-migration (TRYAGAIN), a cluster down or a master it cannot reach, it
raises `Redirected`, and the caller runs the command through redis-py, which follows the redirect and
corrects its slot map, so the next fast command goes to the right master.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from microstate.server.store.redis_pipeline import Arg, RedisPipeline

_REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
DOWN_FOR_SCRIPTS = "write command while the cluster is down"
"""What a node that lost the cluster (but allows reads when down) answers a script at its first write
command: every write script here writes only after its checks, so the script changed nothing."""


class Redirected(Exception):
    """The fast path did not run the command (see the module docstring): run it through redis-py."""


def _never_ran(exc: Exception) -> bool:
    if isinstance(exc, rexc.ResponseError):
        return str(exc).startswith(_REDIRECTS) or DOWN_FOR_SCRIPTS in str(exc)
    # RedisPipeline raises "cannot connect to redis: ..." before it sends anything.
    return isinstance(exc, rexc.ConnectionError) and str(exc).startswith("cannot connect")


class MasterConnections:
    """A RedisPipeline per master, made on first use, for the slot map redis-py keeps."""

    def __init__(
        self,
        client: RedisCluster,
        *,
        username: str | None,
        password: str | None,
        client_name: str,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._client = client
        self._options: dict[str, Any] = {
            "username": username,
            "password": password,
            "client_name": client_name,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
        }
        self._pipelines: dict[tuple[str, int], RedisPipeline] = {}

    def _for_slot(self, slot: int) -> RedisPipeline:
        try:
            node = self._client.nodes_manager.get_node_from_slot(slot)
        except (rexc.SlotNotCoveredError, IndexError, KeyError) as exc:  # no map yet, or a hole in it
            raise Redirected(str(exc)) from exc
        address = (node.host, int(node.port))
        pipeline = self._pipelines.get(address)
        if pipeline is None:
            pipeline = self._pipelines[address] = RedisPipeline(address, **self._options)
        return pipeline

    async def execute(self, slot: int, *command: Arg) -> Any:
        try:
            return await self._for_slot(slot).execute(*command)
        except (rexc.ResponseError, rexc.ConnectionError) as exc:
            if _never_ran(exc):
                raise Redirected(str(exc)) from exc
            raise

    async def execute_each(self, commands: Sequence[tuple[int, tuple[Arg, ...]]]) -> list[Any]:
        """Each (slot, command): one write per master, to every master at once; the replies in order."""
        by_master: dict[RedisPipeline, list[int]] = {}
        for index, (slot, _) in enumerate(commands):
            by_master.setdefault(self._for_slot(slot), []).append(index)
        replies: list[Any] = [None] * len(commands)

        async def one(pipeline: RedisPipeline, indexes: list[int]) -> None:
            answers = await pipeline.execute_many([commands[index][1] for index in indexes])
            for index, answer in zip(indexes, answers, strict=True):
                replies[index] = answer

        try:
            await asyncio.gather(*(one(pipeline, indexes) for pipeline, indexes in by_master.items()))
        except rexc.ConnectionError as exc:
            if _never_ran(exc):
                raise Redirected(str(exc)) from exc
            raise
        for reply in replies:
            if isinstance(reply, rexc.RedisError):
                if _never_ran(reply):
                    raise Redirected(str(reply)) from reply
                raise reply
        return replies

    async def run_script(
        self, slot: int, sha: str, source: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await self._for_slot(slot).run_script(sha, source, keys, args)
        except (rexc.ResponseError, rexc.ConnectionError) as exc:
            if _never_ran(exc):
                raise Redirected(str(exc)) from exc
            raise

    async def close(self) -> None:
        for pipeline in self._pipelines.values():
            await pipeline.close()
        self._pipelines.clear()
