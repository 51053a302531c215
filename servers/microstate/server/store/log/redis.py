"""The Redis log store: a Stream per namespace, one Lua script per append.

Layout of a log namespace `ns` (every key carries the hash tag `{ns}`, the records store's tag for the same
namespace, so both live in one cluster slot and one script may one day write a record and its log entry):

- `msl:{ns}:entries` — a Redis Stream; the entry at position N has the explicit ID `N-0` and the fields
  `t` (commit time, Unix microseconds) and `d` (the data);
- `msl:{ns}:meta` — a hash: `n` the last position given, `t` the position trims cut through;
- `msl:{ns}:key:<dedupe_key>` — per recent dedupe key, `first:count:commit_us`, expiring after
  `dedupe_window` (SET PX): Redis forgets old keys by itself.

An append is ONE Lua script (`_APPEND`): look the dedupe key up (if seen, return the original append and
write nothing), XADD every entry at the next positions, move `n`, SET the key. Scripts run atomically, so
an append lands whole and contiguous, positions follow commit order, and two appends racing with one key
see each other. Time comes from the Redis server (`TIME` in the script), so several processes on several
hosts agree on commit times. A script is never resent after a lost reply: call again with the same
`dedupe_key` and the store says whether the first one landed.

Reads are one MULTI/EXEC (the bookkeeping and XRANGE from one instant). A follower first reads that way (to
check its cursor), then blocks in XREAD on a connection of its own, closed when the follower ends, so an
abandoned follower holds no connection, and a follower blocked on the server never holds up other calls.
Positions are consecutive, so a follower that reads anything but `last + 1` next knows the log was trimmed
past it (or lost data) and raises CursorExpired instead of skipping entries. Outages shorter than
`follow_outage_budget` are retried with backoff and resumed at the last entry yielded.

Trims are Lua scripts too (`_TRIM`): each drops up to `_TRIM_STEP` of the oldest entries older than the
cut-off with XTRIM MINID and records how far it cut, in one atomic step.

Capabilities: `durable` is whatever the caller states (True only for `appendonly yes` with `appendfsync
always` and no failover that can lose acknowledged writes); it defaults to False. Use `noeviction`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, Self, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from microstate.server.store.base import StoreUnavailable, check_namespace
from microstate.server.store.log._shared import (
    DEFAULT_FOLLOW_OUTAGE_BUDGET,
    FOLLOW_BATCH,
    LogReading,
    Wait,
    check_append,
    check_contiguous,
    check_dedupe_window,
    start_position,
)
from microstate.server.store.log.base import (
    DEFAULT_DEDUPE_WINDOW,
    Appended,
    LogCapabilities,
    LogEntry,
)
from microstate.server.store.redis import MICROS, _forget_failure, redis_client
from microstate.server.store.redis import _guard as _redis_guard

_T = TypeVar("_T")

_TRIM_STEP: Final = 1_000
"""Entries one trim script drops at most: XRANGE copies each into Lua, and Redis serves nobody meanwhile."""

# KEYS: meta, entries, audit journal[, dedupe key]. ARGV: dedupe window in ms, the audit entry or '', then
# the entries. The audit entry goes to the journal stream under the first position, never trimmed.
# Returns {0, 'first:count:commit_us'} for a duplicate, else {1, first position, commit_us}.
# If the bookkeeping hash is gone (deleted, evicted) while the stream is not, positions continue after the
# stream's last ID (XADD refuses smaller IDs, and that refusal would come before anything was written).
_APPEND = """
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then return {0, seen} end
end
local head = tonumber(redis.call('HGET', KEYS[1], 'n'))
if not head then
  head = 0
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then head = tonumber(string.match(info[i + 1], '^(%d+)')) end
    end
  end
end
local first = string.format('%.0f', head + 1)
if ARGV[2] ~= '' then redis.call('XADD', KEYS[3], first .. '-0', 'a', ARGV[2]) end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[2], string.format('%.0f-0', head + i - 2), 't', now, 'd', ARGV[i])
end
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', head + #ARGV - 2))
if KEYS[4] then
  redis.call('SET', KEYS[4], first .. ':' .. (#ARGV - 2) .. ':' .. now, 'PX', ARGV[1])
end
return {1, first, now}
"""

# KEYS: meta, entries. ARGV: cut-off (Unix µs), most entries to drop. Returns how many it dropped.
_TRIM = """
local before = tonumber(ARGV[1])
local dropped, last = 0, nil
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[2])) do
  if tonumber(entry[2][2]) >= before then break end
  dropped = dropped + 1
  last = tonumber(string.match(entry[1], '^(%d+)'))
end
if last then
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', last + 1))
  redis.call('HSET', KEYS[1], 't', string.format('%.0f', last))
end
return dropped
"""


def key_base(namespace: str) -> str:
    """What every key of the log of `namespace` starts with: one hash tag, so one slot on a cluster."""
    return f"msl:{{{namespace}}}:"


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> LogEntry:
    return LogEntry(int(entry_id.partition(b"-")[0]), fields[b"d"], int(fields[b"t"]) / MICROS)


class RedisLog(LogReading):
    """A LogStore on Redis (see the module docstring for layout, atomicity and follow)."""

    _guard = staticmethod(_redis_guard)
    """Availability errors -> StoreUnavailable (the cluster log has its own)."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        connect: Callable[..., aioredis.Redis],
        namespace: str,
        *,
        socket_timeout: float,
        dedupe_window: float,
        durable: bool,
        follow_block: float,
        follow_outage_budget: float,
    ) -> None:
        self._connect = connect
        """(name, socket_timeout=...) -> a client of a follower's own, on the node that holds the log."""
        self._socket_timeout = socket_timeout
        self._client = client
        self._followers: set[aioredis.Redis] = set()
        self.namespace = namespace
        self.capabilities = LogCapabilities(durable=durable, shared=True)
        self._dedupe_window_ms = max(1, round(dedupe_window * 1000))
        self._block_ms = max(1, round(follow_block * 1000))
        self._follow_outage_budget = follow_outage_budget
        base = key_base(namespace)
        self._meta_key = f"{base}meta"
        self._entries_key = f"{base}entries"
        self._dedupe_prefix = f"{base}key:"
        self._audit_key = f"{base}audit"
        self._append_script = self._client.register_script(_APPEND)
        self._trim_script = self._client.register_script(_TRIM)
        # Reads are idempotent: retry them on fast connection errors (a pooled connection the server closed,
        # e.g. after a restart). Appends are never resent: one whose reply was lost may have committed.
        self._read_retry = Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.2),
            retries=2,
            supported_errors=(rexc.ConnectionError,),
        )
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        health_check_interval: int = 10,
        durable: bool = False,
        follow_block: float = 1.0,
        follow_outage_budget: float = DEFAULT_FOLLOW_OUTAGE_BUDGET,
    ) -> Self:
        """A log for `namespace` on the Redis at `url` (redis://, rediss:// or unix://; the subclass's).

        Does not contact the server: it may be down now and come up later; call `ping()` to check.
        `follow_block` is how long one blocking read of a follower waits on the server;
        `health_check_interval` applies to the followers' connections.
        """
        check_namespace(namespace)
        check_dedupe_window(dedupe_window)
        client, connect = cls._clients(
            url,
            namespace,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )
        return cls(
            client,
            connect,
            namespace,
            socket_timeout=socket_timeout,
            dedupe_window=dedupe_window,
            durable=durable,
            follow_block=follow_block,
            follow_outage_budget=follow_outage_budget,
        )

    @staticmethod
    def _clients(
        url: str, namespace: str, *, socket_timeout: float, connect_timeout: float, health_check_interval: int
    ) -> tuple[aioredis.Redis | RedisCluster, Callable[..., aioredis.Redis]]:
        """The log's client and how to make a follower's (see `__init__`)."""
        connect = partial(
            redis_client, url, connect_timeout=connect_timeout, health_check_interval=health_check_interval
        )
        return connect(f"microstate-log-{namespace}", socket_timeout=socket_timeout), connect

    async def _read(self, call: Callable[[], Awaitable[_T]]) -> _T:
        if self._closed:
            raise StoreUnavailable("the redis log store is closed")
        return await self._guard(self._read_retry.call_with_retry(call, _forget_failure))

    # -- the LogStore protocol ---------------------------------------------------------------------------

    async def append(
        self, entries: Sequence[bytes], *, dedupe_key: str | None = None, audit: bytes | None = None
    ) -> Appended:
        batch = check_append(entries, dedupe_key)
        if self._closed:
            raise StoreUnavailable("the redis log store is closed")
        keys = [self._meta_key, self._entries_key, self._audit_key]
        if dedupe_key is not None:
            keys.append(self._dedupe_prefix + dedupe_key)
        args: list[bytes | int] = [self._dedupe_window_ms, audit or b"", *batch]
        reply = await self._guard(self._append_script(keys=keys, args=args))
        if reply[0] == 0:
            first, count, commit_us = (int(part) for part in reply[1].split(b":"))
            return Appended(range(first, first + count), commit_us / MICROS, duplicate=True)
        first = int(reply[1])
        return Appended(range(first, first + len(batch)), int(reply[2]) / MICROS, duplicate=False)

    async def audit_journal(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows: Any = await self._read(
            lambda: self._client.xrange(self._audit_key, f"{after + 1}-0", "+", count=limit)
        )
        return [(int(entry_id.partition(b"-")[0]), bytes(fields[b"a"])) for entry_id, fields in rows]

    async def _entries_after(
        self, after: int | None, count: int, *, following: bool
    ) -> tuple[int, list[LogEntry]]:
        """Where the read starts (checked against the log) and up to `count` entries after it."""
        low = "-" if after is None else f"({after}-0"
        (head, trimmed_through), rows = await self._read(partial(self._bookkeeping_and_rows, low, count))
        start = start_position(
            after, head=int(head or 0), trimmed_through=int(trimmed_through or 0), following=following
        )
        entries = [_entry(entry_id, fields) for entry_id, fields in rows]
        check_contiguous(start, entries)
        return start, entries

    async def _bookkeeping_and_rows(self, low: str, count: int) -> list[Any]:
        """[[head, trimmed through], [(entry id, fields), ...]]: the meta hash and up to `count` entries
        from `low` on, from one instant (one MULTI/EXEC)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hmget(self._meta_key, ["n", "t"])
        pipe.xrange(self._entries_key, low, "+", count=count)
        return await pipe.execute()

    @contextlib.asynccontextmanager
    async def _waiting(self) -> AsyncIterator[Wait]:
        """A follower blocks in XREAD on a connection of its own (see the module docstring), closed when it
        ends; its socket timeout outlasts the block time. After a failed read the next wait connects
        anew (on a cluster, to the node that holds the log by then)."""
        readers: list[aioredis.Redis] = []  # the follower's current one, if any

        async def drop() -> None:
            for reader in readers:
                self._followers.discard(reader)
                await reader.aclose()
            readers.clear()

        async def wait(position: int) -> list[LogEntry]:
            if not readers:
                readers.append(
                    self._connect(
                        f"microstate-log-{self.namespace}-follow",
                        socket_timeout=self._block_ms / 1000 + self._socket_timeout,
                    )
                )
                self._followers.add(readers[0])
            try:
                entries = await self._blocking_read(readers[0], position)
            except StoreUnavailable:
                await drop()
                raise
            check_contiguous(position, entries)
            return entries

        try:
            yield wait
        finally:
            await drop()

    async def _blocking_read(self, reader: aioredis.Redis, position: int) -> list[LogEntry]:
        """The entries after `position`, waiting up to `follow_block` for some."""
        if self._closed:
            raise StoreUnavailable("the redis log store is closed")
        reply: Any = await self._guard(
            reader.xread({self._entries_key: f"{position}-0"}, count=FOLLOW_BATCH, block=self._block_ms)
        )
        return [_entry(entry_id, fields) for entry_id, fields in reply[0][1]] if reply else []

    async def head(self) -> str:
        raw = await self._read(lambda: self._client.hget(self._meta_key, "n"))
        return str(int(raw or 0))

    async def trim(self, before_time: float) -> int:
        if self._closed:
            raise StoreUnavailable("the redis log store is closed")
        keys, args = [self._meta_key, self._entries_key], [round(before_time * MICROS), _TRIM_STEP]
        dropped = 0
        while True:  # in steps, so Redis serves other clients in between
            step = int(await self._guard(self._trim_script(keys=keys, args=args)))
            dropped += step
            if step < _TRIM_STEP:
                return dropped

    async def ping(self) -> None:
        await self._read(self._client.ping)

    async def close(self) -> None:
        self._closed = True
        for reader in list(self._followers):  # a blocked follower then ends with StoreUnavailable at once
            await reader.aclose()
        await self._client.aclose()


__all__ = ["RedisLog"]
