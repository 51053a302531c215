"""The Redis Cluster store: one microstate spread over P partitions, each a hash tag of its own.

URL: `redis+cluster://[user:password@]host1:port,host2:port[/0][?settings]`. The listed nodes are only where
discovery starts: redis-py's asyncio RedisCluster learns the slot map from them, follows MOVED and ASK, and
maps the slot map again after a failover or a slot migration.

Layout of a namespace `ns` with P partitions (P fixed when the namespace is created, recorded in
`msc:{ns}:partitions`; the `partitions` setting only matters for a namespace that does not exist yet). A key
belongs to partition crc32(key) % P; partition p has a hash tag `{ns:p:n}`, n picked so that the tags' slots
spread evenly over the 16384 slots (so over the masters, whatever their number), and holds the same keys as a
single-node namespace (redis.py): `r:<key>` records, `idx` and `exp` sorted sets, `log` the stream of its
changes, `meta` (a hash: `last`, the partition's clock; `tail`, see erasure below) and `audit`, its audit
journal (audit/: the entries of audited writes, keyed by revision, never trimmed). Every write is one Lua
script on one partition, so on one node: check `if_match`, pick the revision, XADD the audit entry and the
change, write the record. `audit_journal` merges the journals behind the same watermark as the watch (below).

Revisions: a partition cannot share one counter with the others without a hot slot every write goes
through, so a revision is a hybrid logical clock: the partition's clock moves to max(the node's TIME in
microseconds, its last value + 1, the clock of the highest revision the store has seen + 1), and the revision
is that clock with the partition's number appended in three digits, so no two partitions share one (two
masters can commit in the same microsecond). It is exact per key (a key's partition is fixed, and a
partition's revisions strictly increase), so etags stay exact; it increases across the namespace in the
order of the calls of one store object, and across processes as far as the masters' clocks agree (NTP: well
under the time one call takes to cause another). The Store protocol's cursor stays what it is for every
backend: the revision in decimal.

Watch merges the partitions' logs by revision behind a watermark: it reads TIME from every master first,
then each partition's entries after its position; any change committed later gets a revision at least its
node's TIME, so every change below the lowest of those times is final and is delivered, in revision order.
So one integer is a complete resume position (every change at or below it was delivered, every change above
it will be), and a resume delivers every change exactly once with no gap, whatever the skew between the
masters' clocks (the skew only delays delivery). Each log entry carries `p`, the partition's previous
revision, so a trimmed log is detected exactly (CursorExpired). A master whose clock steps backwards by more
than the watch lag can break this; the watch then reports CursorExpired instead of skipping a change.
Watches poll (`watch_poll`): a blocking XREAD cannot span slots.

Erasure (`forget`, kit/subjects.py) runs one script per partition: it rebuilds the partition's log without the
erased keys' entries and hands each removed run's `p` to the entry after it (or, when the run ended the log,
to the next write, through `tail` in meta), so the chain stays whole and a watch goes across the hole.

P can change online (`microstate migrate NAME --partitions P`): the descriptor then holds the layouts
(redis_cluster_layout.py), re-read every LAYOUT_REFRESH; while a repartition runs, the write scripts' guard
(`_FORWARD`) sends writes of keys a moving partition no longer holds to their new partition, reads and List
consult both layouts (redis_cluster_repartition.py), and a watch merges both layouts' logs, re-reading the
descriptor each round after the watermark.

Get, BatchGet and the writes go over one multiplexed connection per master (redis_cluster_nodes.py), the
rest, and whatever meets a redirect there, through redis-py. Writes are resent only when the cluster refused
them unexecuted (TRYAGAIN, ASK/MOVED, CLUSTERDOWN, no connection), never after a lost reply, which may have
committed; reads retry within `failover_budget` and ask the replicas in between. `wait=N` makes every write
wait for N replicas to acknowledge it (WAIT, after a mark written on WAIT's own connection) and fails it as
unavailable if they do not within half of `socket_timeout`: Redis Cluster replicates asynchronously, so
without it a master that dies loses the writes its replicas had not received.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import math
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import LoadBalancingStrategy
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from microstate.server.cancellation import end_if_cancelled
from microstate.server.store._shared import Outage, backoff, check_ttl, guard, require_positive
from microstate.server.store._url_settings import settings_from_url
from microstate.server.store.base import (
    ABSENT,
    Capabilities,
    Change,
    CursorExpired,
    IfMatch,
    Page,
    PreconditionFailed,
    Record,
    StoreMisconfigured,
    StoreUnavailable,
    check_namespace,
    expected_revision,
)
from microstate.server.store.redis import (
    _CONDITION,
    _LIST,
    _PROLOGUE,
    _PURGE,
    FORGET_LUA,
    MICROS,
    RedisStore,
    _current,
    _expiry,
    _parse_cursor,
    _record,
    _unavailable,
)
from microstate.server.store.redis_cluster_layout import SUFFIXES, Layout, Layouts
from microstate.server.store.redis_cluster_nodes import DOWN_FOR_SCRIPTS, MasterConnections, Redirected

T = TypeVar("T")

# next_revision(): the partition's clock (microseconds) moves to max(TIME, its last + 1, the caller's floor),
# and the revision is that clock with the partition's number (ARGV[7], three digits) appended, so no two
# partitions ever share a revision. Lua's doubles hold the clock exactly; the revision only as a string.
# The previous revision is the clock's last value, or `tail` where forget removed the log's last entries.
_NEXT_REVISION = """
local function next_revision()
  local meta = redis.call('HMGET', KEYS[2], 'last', 'tail')
  local last = meta[1]
  if not last then
    local entry = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
    last = entry[1] and string.sub(string.match(entry[1][1], '^(%d+)'), 1, -4) or '0'
  end
  local clock = math.max(now, tonumber(last) + 1, tonumber(ARGV[6]))
  redis.call('HSET', KEYS[2], 'last', int(clock))
  local prev = '0'
  if meta[2] then
    prev = meta[2]
    redis.call('HDEL', KEYS[2], 'tail')
  elseif last ~= '0' then
    prev = last .. ARGV[7]
  end
  return int(clock) .. ARGV[7], prev
end
"""
# The repartition guard of both write scripts (redis_cluster_repartition.py). KEYS[7], KEYS[8]: the
# partition's `moved` and `owned` sets; the last ARGV: '' or how the key's old partition answered ('moved',
# 'absent'). A partition whose keys are moving away takes no write of a key it no longer holds: it answers
# {3, whether the key moved, its clock}, and the caller writes in the key's new partition. A partition
# keys are arriving in marks every key written there owned (also after the switch, until every server
# knows of it), after an 'absent' answer first forgetting what is not owned (a copy of a key its old
# partition has since deleted).
_FORWARD = """
local flags = redis.call('HMGET', KEYS[2], 'moving', 'arriving')
if flags[1] then
  if not live(parse(redis.call('GET', KEYS[1]))) then
    return {3, redis.call('SISMEMBER', KEYS[7], ARGV[1]), redis.call('HGET', KEYS[2], 'last') or '0'}
  end
elseif flags[2] then
  if ARGV[#ARGV] == 'absent' and redis.call('SISMEMBER', KEYS[8], ARGV[1]) == 0 then
    forget(KEYS[3], KEYS[5], KEYS[1], ARGV[1])
  end
  redis.call('SADD', KEYS[8], ARGV[1])
end
"""
# KEYS: record, meta, index, log, expiries, audit journal (as redis.py's: never trimmed, its IDs the
# revisions), moved, owned. ARGV: key, mode, expected revision, log retention (exact), record prefix, clock
# floor, partition suffix, then value, ttl in microseconds or '', the audit entry or '', and the arrival.
# Returns {1, revision, expires, commit_us}.
_PUT = (
    _PROLOGUE
    + _FORWARD
    + _CONDITION
    + _PURGE
    + _NEXT_REVISION
    + """
local rev, prev = next_revision()
local expires = ''
if ARGV[9] ~= '' then expires = int(now + tonumber(ARGV[9])) end
local kind = 'c'
if is_live then kind = 'u' end
if ARGV[10] ~= '' then redis.call('XADD', KEYS[6], rev .. '-0', 'a', ARGV[10]) end
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[4], rev .. '-0',
  'k', ARGV[1], 'o', kind, 'v', ARGV[8], 'x', expires, 't', int(now), 'p', prev)
write(KEYS[1], rev, expires, ARGV[8])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if expires == '' then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], expires, ARGV[1])
end
purge_expired()
return {1, rev, expires, int(now)}
"""
)
# As _PUT without value and ttl (the audit entry is ARGV[8], the arrival ARGV[9]). Returns {1, revision}
# when deleted, {2} when absent.
_DELETE = (
    _PROLOGUE
    + _FORWARD
    + _CONDITION
    + _PURGE
    + _NEXT_REVISION
    + """
if not is_live then
  forget(KEYS[3], KEYS[5], KEYS[1], ARGV[1])
  return {2}
end
local rev, prev = next_revision()
if ARGV[8] ~= '' then redis.call('XADD', KEYS[6], rev .. '-0', 'a', ARGV[8]) end
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[4], rev .. '-0',
  'k', ARGV[1], 'o', 'd', 't', int(now), 'p', prev)
forget(KEYS[3], KEYS[5], KEYS[1], ARGV[1])
purge_expired()
return {1, rev}
"""
)
# KEYS: one partition's log, meta. ARGV: keep_deletions ("1"/"0"), then the keys. The log is rebuilt
# without the doomed keys' entries (but deletions, when kept), each kept entry after a removed run taking the
# run's `p`, so the chain a watch checks stays whole and a hole is not taken for a trimmed log; if the run
# ends the log, `tail` in meta hands its `p` to the next write. Returns how many entries went.
_FORGET = (
    "local first_key = 2\n"
    + FORGET_LUA
    + """
local kept, carry, removed = {}, nil, 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  if doomed(entry[2]) then
    carry = carry or field(entry[2], 'p')
    removed = removed + 1
  else
    if carry then
      local _, at = field(entry[2], 'p')
      entry[2][at] = carry
      carry = nil
    end
    kept[#kept + 1] = entry
  end
end
if removed > 0 then
  rebuild(KEYS[1], kept)
  if carry then redis.call('HSET', KEYS[2], 'tail', carry) end
end
return removed
"""
)
# KEYS: record keys of one partition. Returns the live ones' record strings (false for the others), judged
# by the node's own clock: for records with a TTL only (the others take a plain MGET).
_READ_LIVE = (
    _PROLOGUE
    + """
local out = {}
for i, record in ipairs(KEYS) do
  local raw = redis.call('GET', record)
  if live(parse(raw)) then out[i] = raw else out[i] = false end
end
return out
"""
)

DEFAULT_PARTITIONS = 32
"""Enough that evenly spread tags put each of 3 to 8 masters within ~10% of an even share of the keys; few
enough that a List or a watch round (one command per partition) stays cheap."""
MAX_PARTITIONS = SUFFIXES
"""A revision ends in the partition's number, three digits."""
SUFFIX = SUFFIXES
WATCH_BATCH = 256
IN_FLIGHT = 64
"""Calls of one store at once; each holds at most one connection per node (a pipeline, TIME on every
master), so a node's pool (MAX_CONNECTIONS) never runs out."""
MAX_CONNECTIONS = 4 * IN_FLIGHT
LAYOUT_REFRESH = 1.0
"""Seconds a store trusts the partition layout it read: a repartition waits longer than this (`settle`)
between telling the servers and moving the first key."""


@functools.cache
def partition_tags(namespace: str, partitions: int) -> list[str]:
    """The hash tag of each partition: `ns:p:n`, the first n whose slot lies near the middle of the p-th of
    `partitions` equal slices of the slot space, so the partitions spread over the masters as evenly as
    slots do, and a partition whose slice straddles two masters' ranges still lands on one predictably."""
    tags = []
    width = REDIS_CLUSTER_HASH_SLOTS / partitions
    near = min(width, max(32.0, width / 8)) / 2
    for partition in range(partitions):
        middle = (partition + 0.5) * width
        n = 0
        while abs(key_slot(f"{namespace}:{partition}:{n}".encode()) + 0.5 - middle) > near:
            n += 1
        tags.append(f"{namespace}:{partition}:{n}")
    return tags


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def check_partitions(partitions: int) -> None:
    """ValueError for a partition count no layout can have."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be from 1 to {MAX_PARTITIONS}, not {partitions}")


def by_partition(partitions: Sequence[_Partition], keys: Iterable[str]) -> dict[int, list[str]]:
    """`keys` grouped by the number of their partition among `partitions`, each group in the given order."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(partition_of(key, len(partitions)), []).append(key)
    return groups


def _revision(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


def _final_below(watermark: int, batches: list[Any], count: int) -> int:
    """The revision below which the entries of `batches` (each stream's entries after a position, in
    order, at most `count`) are final and complete: the watermark, lowered to just past the last entry of
    any stream whose batch came back full, which may hold more below the watermark than was read."""
    limit = watermark
    for entries in batches:
        if len(entries) == count:
            limit = min(limit, _revision(entries[-1][0]) + 1)
    return limit


class _Partition:
    """The keys of one partition (see the module docstring)."""

    def __init__(self, tag: str, suffix: int = 0) -> None:
        base = f"msc:{{{tag}}}:"
        self.suffix = f"{suffix:03d}"  # what its revisions end in
        self.record_prefix = f"{base}r:"
        self.meta = f"{base}meta"
        self.index = f"{base}idx"
        self.log = f"{base}log"
        self.expiries = f"{base}exp"
        self.audit = f"{base}audit"
        self.moved = f"{base}moved"  # keys moved to the next layout (while repartitioning)
        self.owned = f"{base}owned"  # keys written here since they arrived (while repartitioning)
        self.slot = key_slot(tag.encode())

    def write_keys(self, key: str) -> tuple[str, ...]:
        record = self.record_prefix + key
        return record, self.meta, self.index, self.log, self.expiries, self.audit, self.moved, self.owned


def layout_partitions(namespace: str, layout: Layout) -> list[_Partition]:
    tags = partition_tags(layout.tag_namespace(namespace), layout.partitions)
    return [_Partition(tag, layout.base + number) for number, tag in enumerate(tags)]


Partitions = list[_Partition]
Positions = list[int]
Replies = list[Any]
Keys = list[str]
Journaled = list[tuple[int, bytes]]
"""Aliases for annotations inside RedisClusterStore, whose `list` method hides the builtin there."""


def _classify(exc: Exception) -> StoreUnavailable | None:
    if isinstance(exc, rexc.RedisClusterException):
        if "Cluster mode is not enabled" in str(exc):
            return StoreMisconfigured(f"redis: the store URL names a server outside any cluster: {exc}")
        return StoreUnavailable(f"redis cluster: {type(exc).__name__}: {exc}")
    if isinstance(exc, rexc.ClusterError | rexc.TryAgainError | rexc.MovedError) or _down_for_scripts(exc):
        return StoreUnavailable(f"redis cluster: {type(exc).__name__}: {exc}")
    return _unavailable(exc)


def _down_for_scripts(exc: Exception) -> bool:
    return isinstance(exc, rexc.ResponseError) and DOWN_FOR_SCRIPTS in str(exc)


def _unexecuted(exc: Exception) -> bool:
    """Whether `exc` shows that the command never ran: the cluster refused it, or it was never sent (no
    connection could be made: redis-py says "Error 111 connecting to host:port")."""
    if isinstance(exc, rexc.TryAgainError | rexc.AskError | rexc.ClusterDownError | rexc.SlotNotCoveredError):
        return True  # MovedError is an AskError
    if (isinstance(exc, rexc.ConnectionError) and " connecting to " in str(exc)) or _down_for_scripts(exc):
        return True
    return isinstance(exc, rexc.ClusterError) and "TTL exhausted" in str(exc)  # redirects or TRYAGAINs


async def _guard(call: Awaitable[T]) -> T:
    return await guard(call, _classify)


def startup_nodes(url: str) -> tuple[list[ClusterNode], str | None, str | None]:
    """The nodes a redis+cluster:// URL lists, and its username and password; ValueError if malformed."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("bad Redis Cluster store URL: a cluster has database 0 only")
    nodes = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                "bad Redis Cluster store URL: list the nodes as host:port,host:port"
                " (redis+cluster://10.0.0.1:7000,10.0.0.2:7000)"
            )
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return nodes, unquote(username) or None, unquote(password) or None


def cluster_client(
    nodes: list[ClusterNode],
    username: str | None,
    password: str | None,
    name: str,
    *,
    socket_timeout: float,
    connect_timeout: float,
    **options: Any,
) -> RedisCluster:
    """redis-py's cluster client for `startup_nodes(url)`, named `name` in CLIENT LIST, failing within the
    timeouts and never resending a command by itself (callers retry what is safe to retry)."""
    return RedisCluster(
        startup_nodes=nodes,
        username=username,
        password=password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),  # never resend a write; reads retry in _read
        max_connections=MAX_CONNECTIONS,
        reinitialize_steps=0,  # a MOVED patches the slot map (a full refresh closes connections in use)
        client_name=name,
        **options,
    )


class RedisClusterStore:
    """A Store on a Redis Cluster (see the module docstring)."""

    def __init__(
        self,
        client: RedisCluster,
        replicas: RedisCluster,
        masters: MasterConnections,
        namespace: str,
        *,
        partitions: int,
        retention: int,
        durable: bool,
        wait: int,
        socket_timeout: float,
        watch_poll: float,
        watch_outage_budget: float,
        failover_budget: float,
    ) -> None:
        self._client = client
        self._replicas = replicas  # record reads the masters cannot answer (see _read)
        self._masters = masters  # the fast path of the hot commands (redis_cluster_nodes.py)
        self.namespace = namespace
        self.retention = retention
        self.capabilities = Capabilities(durable=durable, shared=True, native_ttl=True)
        self._requested_partitions = partitions
        self._layouts = Layouts(Layout(partitions))
        self._layouts_read_at = -math.inf
        self._partitions: Partitions = []  # the current layout's
        self._arriving: Partitions | None = None  # the next layout's, while a repartition runs
        self._descriptor = f"msc:{{{namespace}}}:partitions"
        self._wait = wait
        self._wait_ms = max(1, int(socket_timeout * 500))  # WAIT must answer well within the socket timeout
        self._watch_poll = watch_poll
        self._watch_outage_budget = watch_outage_budget
        self._failover_budget = failover_budget
        self._put_script = client.register_script(_PUT)
        self._delete_script = client.register_script(_DELETE)
        self._list_script = client.register_script(_LIST)
        self._read_live_script = client.register_script(_READ_LIVE)
        self._forget_script = client.register_script(_FORGET)
        self._scripts: dict[str, Any] = {}  # what `script` made, by source
        self._ready_lock = asyncio.Lock()
        # redis-py's cluster pools fail a command (MaxConnectionsError) rather than queue it: calls wait here.
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self._seen = 0  # the highest revision this store wrote or read: its next write goes above it
        self._closed = False

    @classmethod
    @settings_from_url("redis-py")
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        retention: int = 100_000,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        durable: bool = False,
        wait: int = 0,
        watch_poll: float = 0.05,
        watch_outage_budget: float = 30.0,
        failover_budget: float = 10.0,
    ) -> RedisClusterStore:
        """A store for `namespace` on the Redis Cluster the URL's nodes belong to.

        Does not contact the cluster (`ping()` does). `partitions` applies when the namespace is created;
        `retention` is how many changes the logs keep in all, at least (each partition keeps its share);
        `wait` how many replicas must acknowledge each write."""
        check_namespace(namespace)
        require_positive(
            retention=retention,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            watch_poll=watch_poll,
        )
        check_partitions(partitions)
        nodes, username, password = startup_nodes(url)
        connect = partial(
            cluster_client,
            nodes,
            username,
            password,
            f"microstate-{namespace}",
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
        client = connect()
        replicas = connect(load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN_REPLICAS)
        masters = MasterConnections(
            client,
            username=username,
            password=password,
            client_name=f"microstate-{namespace}-pipeline",
            timeout=socket_timeout,
            connect_timeout=connect_timeout,
        )
        return cls(
            client,
            replicas,
            masters,
            namespace,
            partitions=partitions,
            retention=retention,
            durable=durable,
            wait=wait,
            socket_timeout=socket_timeout,
            watch_poll=watch_poll,
            watch_outage_budget=watch_outage_budget,
            failover_budget=failover_budget,
        )

    def script(self, source: str) -> Any:
        """redis-py's Script of the Lua `source` (its sha computed once per store): for the scripts other
        modules run on this store's client (the repartition's)."""
        made = self._scripts.get(source)
        if made is None:
            made = self._scripts[source] = self._client.register_script(source)
        return made

    # --- partitions --------------------------------------------------------------------------------

    async def _ready(self) -> Partitions:
        """The current layout's partitions, the namespace's layout read (or recorded, for a new namespace)
        on first use and again when older than LAYOUT_REFRESH (by one call at a time: the others go on
        with the layout they have)."""
        fresh = time.monotonic() - self._layouts_read_at < LAYOUT_REFRESH
        if self._partitions and (fresh or self._ready_lock.locked()):
            return self._partitions
        await self._refresh_layouts()
        return self._partitions

    async def _refresh_layouts(self) -> Layouts:
        """The namespace's layouts as stored now, adopted by this store."""
        async with self._ready_lock:
            if not self._partitions:
                # SET NX GET: records P if the namespace is new, and answers the descriptor if it is not.
                wanted = self._requested_partitions
                record = partial(self._client.set, self._descriptor, wanted, nx=True, get=True)
                raw: Any = await self._read(record)
                # Map the replicas now, while the masters answer: a client that first meets the cluster
                # during a failover cannot map it (redis-py asks the dead master for COMMAND).
                await self._read(self._replicas.initialize)
            else:
                raw = await self._read(partial(self._client.get, self._descriptor))
            self._adopt(Layouts(Layout(self._requested_partitions)) if raw is None else Layouts.decode(raw))
        return self._layouts

    def _adopt(self, layouts: Layouts) -> None:
        if layouts != self._layouts or not self._partitions:
            self._partitions = layout_partitions(self.namespace, layouts.current)
            upcoming = layouts.next
            self._arriving = None if upcoming is None else layout_partitions(self.namespace, upcoming)
        self._layouts = layouts
        self._layouts_read_at = time.monotonic()

    def _partition(self, partitions: Partitions, key: str) -> _Partition:
        return partitions[partition_of(key, len(partitions))]

    def _log_length(self, partitions: Partitions) -> int:
        return max(1, math.ceil(self.retention / len(partitions)))

    # --- reads -------------------------------------------------------------------------------------

    async def _read(
        self, call: Callable[[], Awaitable[T]], *, on_replicas: Callable[[], Awaitable[T]] | None = None
    ) -> T:
        """A read, retried with backoff on errors a failover or a slot migration causes (reads are
        idempotent); the last error as StoreUnavailable. A record read (`on_replicas`) that the masters
        cannot answer is asked of the replicas in between: a master that died answers from its replica,
        which may lag it by the writes it had not yet received, until the replica has taken over."""
        # A cluster never reached yet (a wrong address, a cluster down) fails at once, not after the budget.
        budget = self._failover_budget if self._partitions else 0.0
        deadline = asyncio.get_running_loop().time() + budget
        for attempt in itertools.count():
            try:
                async with self._in_flight:
                    return await _guard(call())
            except StoreMisconfigured:
                raise
            except StoreUnavailable:
                if on_replicas is not None:
                    with contextlib.suppress(StoreUnavailable):
                        async with self._in_flight:
                            return await _guard(on_replicas())
                if asyncio.get_running_loop().time() > deadline or self._closed:
                    raise
                await asyncio.sleep(backoff(attempt, base=0.02, cap=0.25))
        raise AssertionError("unreachable")

    async def _unexecuted_retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """A write, retried only on errors that prove the node did not run it (a slot mid-migration, a
        redirect loop, a cluster still electing a master, a dead master refusing connections), for up to
        `failover_budget` seconds: a slot migration or a failover costs a write some delay, not a failure.
        Never on a lost connection or a timeout, after which the write may have committed."""
        deadline = asyncio.get_running_loop().time() + self._failover_budget
        for attempt in itertools.count():
            try:
                async with self._in_flight:
                    return await call()
            except Exception as exc:
                if not _unexecuted(exc) or asyncio.get_running_loop().time() > deadline or self._closed:
                    unavailable = _classify(exc)
                    if unavailable is None:
                        raise
                    raise unavailable from exc
            await asyncio.sleep(backoff(attempt, base=0.02, cap=0.25))
        raise AssertionError("unreachable")

    def _saw(self, revision: int) -> None:
        self._seen = max(self._seen, revision)

    async def get(self, key: str) -> Record | None:
        partitions = await self._ready()
        if self._arriving is not None:
            return (await self.batch_get([key])).get(key)
        partition = self._partition(partitions, key)
        record_key = partition.record_prefix + key
        raw: bytes | None
        try:
            raw = await _guard(self._masters.execute(partition.slot, "GET", record_key))
        except (Redirected, StoreUnavailable):  # a read may go again: through redis-py, with its retries
            raw = await self._read(
                lambda: self._client.execute_command("GET", record_key),
                on_replicas=lambda: self._replicas.execute_command("GET", record_key),
            )
        if raw is None:
            return None
        record = _record(key, raw)
        if record.expires_at is not None:
            return (await self.batch_get([key])).get(key)
        self._saw(record.revision)
        return record

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        """One MGET per partition, one write per master, all masters at once (redis-py's cluster pipeline
        where the fast path was redirected); records with a TTL are read again with the node's clock."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        partitions = await self._ready()
        if self._arriving is not None:
            # Imported here: that module imports this one.
            from microstate.server.store.redis_cluster_repartition import read_moving

            return await read_moving(self, partitions, self._arriving, unique)
        groups = by_partition(partitions, unique)

        async def mget_all(client: RedisCluster) -> Replies:
            pipeline = client.pipeline()
            for number, members in groups.items():
                prefix = partitions[number].record_prefix
                pipeline.execute_command("MGET", *[prefix + key for key in members])
            return await pipeline.execute()

        def mget(number: int, members: Keys) -> tuple[int, tuple[str, ...]]:
            prefix = partitions[number].record_prefix
            return partitions[number].slot, ("MGET", *[prefix + key for key in members])

        mgets = [mget(number, members) for number, members in groups.items()]
        replies: Replies
        try:
            replies = await _guard(self._masters.execute_each(mgets))
        except (Redirected, StoreUnavailable):
            replies = await self._read(
                partial(mget_all, self._client), on_replicas=partial(mget_all, self._replicas)
            )
        records: dict[str, Record] = {}
        timed: dict[int, Keys] = {}
        for (number, members), raws in zip(groups.items(), replies, strict=True):
            for key, raw in zip(members, raws, strict=True):
                if raw is not None:
                    record = _record(key, raw)
                    if record.expires_at is None:
                        records[key] = record
                    else:
                        timed.setdefault(number, []).append(key)
        if timed:
            records.update(await self._read_live(partitions, timed))
        if records:
            self._saw(max(record.revision for record in records.values()))
        return records

    async def _read_live(self, partitions: Partitions, timed: dict[int, Keys]) -> dict[str, Record]:
        async def one(number: int, members: list[str]) -> Replies:
            prefix = partitions[number].record_prefix
            script = self._read_live_script
            return await self._read(lambda: script(keys=[prefix + key for key in members]))

        replies = await asyncio.gather(*(one(number, members) for number, members in timed.items()))
        return {
            key: _record(key, raw)
            for members, raws in zip(timed.values(), replies, strict=True)
            for key, raw in zip(members, raws, strict=True)
            if raw
        }

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        """Each partition's first `limit + 1` records after `after`, in parallel, merged in key order; the
        page ends at its last key, which is where every partition resumes (`after` stays the token)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        partitions = await self._ready()
        if self._arriving is not None:
            # Imported here: that module imports this one.
            from microstate.server.store.redis_cluster_repartition import list_moving

            return await list_moving(self, partitions, self._arriving, prefix, after, limit)
        rows = heapq.merge(*await self._list_each(partitions, prefix, after, limit), key=lambda row: row[0])
        first = [row for _, row in zip(range(limit + 1), rows, strict=False)]
        records = [_record(member.decode(), raw) for member, raw in first[:limit]]
        return Page(records, records[-1].key if len(first) > limit else None)

    async def _list_each(
        self, partitions: Sequence[_Partition], prefix: str, after: str | None, limit: int, script: Any = None
    ) -> Replies:
        """Each partition's first `limit + 1` live records after `after`, in key order, in parallel."""
        low, high = RedisStore._lex_range(prefix, after)
        script = script or self._list_script

        async def one(partition: _Partition) -> Replies:
            keys = (partition.index, partition.expiries, partition.owned)
            args = (partition.record_prefix, low, high, limit + 1)
            return await self._read(lambda: script(keys=keys, args=args))

        return list(await asyncio.gather(*map(one, partitions)))  # one list of rows per partition

    async def _primaries_time(self) -> int:
        """The lowest TIME of the masters as a revision (microseconds * SUFFIX): the watermark below which
        changes are final."""
        primaries = self._client.get_primaries()
        if not primaries:
            await self._client.initialize()
            primaries = self._client.get_primaries()
        times = await asyncio.gather(
            *(self._client.execute_command("TIME", target_nodes=node) for node in primaries)
        )
        return min(int(seconds) * MICROS + int(micros) for seconds, micros in times) * SUFFIX

    async def head_cursor(self) -> str:
        """The latest change below the watermark: everything at or below it is final."""
        await self._ready()
        layouts = self._layouts
        logs = [partition.log for partition in self._logged(layouts)]

        async def head() -> int:
            watermark = await self._primaries_time()
            pipeline = self._client.pipeline()
            for log in logs:
                pipeline.xrevrange(log, f"({watermark}-0", "-", count=1)
            latest = await pipeline.execute()
            newest = (int(entries[0][0].partition(b"-")[0]) for entries in latest if entries)
            return max(newest, default=layouts.expired_below)

        return str(await self._read(head))

    def _logged(self, layouts: Layouts) -> Partitions:
        """The partitions whose logs a watch reads: the current layout's, the next one's while a
        repartition runs, and the one it left while its logs remain."""
        chosen = [*layouts.watched(), *([layouts.dropped] if layouts.dropped else [])]
        return [partition for layout in chosen for partition in layout_partitions(self.namespace, layout)]

    async def ping(self) -> None:
        await self._read(lambda: self._client.execute_command("PING"))
        await self._ready()

    # --- writes ------------------------------------------------------------------------------------

    def _write_args(self, key: str, if_match: IfMatch, partitions: Partitions) -> tuple[Any, ...]:
        if if_match is None:
            condition = ("any", "")
        elif if_match is ABSENT:
            condition = ("absent", "")
        else:
            condition = ("rev", str(expected_revision(if_match)))
        partition = self._partition(partitions, key)
        floor = self._seen // SUFFIX + 1  # the clock part of the highest revision seen, + 1
        length = self._log_length(partitions)
        return (key, *condition, length, partition.record_prefix, floor, partition.suffix)

    async def _routed(self, script: Any, key: str, if_match: IfMatch, *rest: Any) -> Replies:
        """The write script on the key's partition; while a repartition runs, on its new partition where
        the old one answers that it no longer holds the key (the `_FORWARD` guard)."""
        partitions = await self._ready()
        arrival = ""
        for _ in range(3):
            target = self._arriving if arrival and self._arriving is not None else partitions
            partition = self._partition(target, key)
            args = (*self._write_args(key, if_match, target), *rest, arrival)
            reply = await self._write(script, partition.slot, partition.write_keys(key), args)
            if reply[0] != 3:
                return reply
            self._saw(int(reply[2]) * SUFFIX)  # its new partition goes on above the old one's clock
            if self._arriving is None:  # a repartition this store has not heard of yet
                await self._refresh_layouts()
            partitions = self._partitions
            arrival = "" if self._arriving is None else ("moved" if int(reply[1]) else "absent")
        raise StoreUnavailable("redis cluster: the partition layout kept changing under a write")

    async def _write(self, script: Any, slot: int, keys: tuple[str, ...], args: tuple[Any, ...]) -> Replies:
        """The write script on the partition's master: the fast path, or redis-py where it was redirected."""
        reply: Replies
        try:
            reply = await _guard(self._masters.run_script(slot, script.sha, script.script, keys, args))
        except Redirected:
            reply = await self._unexecuted_retried(lambda: script(keys=keys, args=args))
        if reply[0] == 1 and len(reply) > 1:
            self._saw(int(reply[1]))
            if self._wait:
                await self._replicated(keys[1])
        return reply

    async def _replicated(self, meta: str) -> None:
        """WAIT on the node that took the write (see the module docstring); StoreUnavailable if fewer than
        `wait` replicas acknowledged it in time. WAIT covers the writes of its own connection only, and the
        write went over another one: so this connection first writes too (a mark in the partition's meta,
        after the write in the node's replication stream) and WAIT then covers both."""
        node = self._client.get_node_from_key(meta)
        if node is None:
            raise StoreUnavailable("redis cluster: no node serves the slot of the write")
        connection = node.acquire_connection()
        try:
            await connection.send_packed_command(
                connection.pack_commands([("HSET", meta, "waited", "1"), ("WAIT", self._wait, self._wait_ms)])
            )
            await connection.read_response()
            acknowledged = await connection.read_response()
        except Exception as exc:
            await connection.disconnect()
            raise StoreUnavailable(f"redis cluster: WAIT failed: {exc}") from exc
        finally:
            node.release(connection)
        if int(acknowledged) < self._wait:
            raise StoreUnavailable(
                f"redis cluster: {acknowledged} of the {self._wait} replicas asked for acknowledged the write"
            )

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: IfMatch = None,
        ttl: float | None = None,
        audit: bytes | None = None,
    ) -> Record:
        check_ttl(ttl)
        ttl_micros = "" if ttl is None else str(max(1, round(ttl * MICROS)))
        reply = await self._routed(self._put_script, key, if_match, value, ttl_micros, audit or b"")
        if reply[0] == 0:
            raise PreconditionFailed(key, _current(key, reply))
        return Record(key, value, int(reply[1]), _expiry(reply[2]))

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        reply = await self._routed(self._delete_script, key, if_match, audit or b"")
        if reply[0] == 0:
            raise PreconditionFailed(key, _current(key, reply))
        return bool(reply[0] == 1)

    # --- erasure ----------------------------------------------------------------------------------

    async def forget(self, keys: Sequence[str], *, keep_deletions: bool = True) -> None:
        """Remove the change-log entries of `keys` (but their deletions, with `keep_deletions`, so watchers
        still learn that the keys went), as the single-node store does (kit/subjects.py): one script per
        partition the keys fall in, each atomic on its master, all at once. Each rebuilds its partition's
        log without the removed entries' bytes (a pause of Redis as long as that log: `retention` / P
        entries) and relinks the chain of previous revisions across the hole, so a watch reading across
        it goes on. What Redis persisted (AOF, RDB) keeps the old values until it is rewritten
        (SECURITY.md). Safe to repeat: forgetting again removes nothing more, so it is retried as reads
        are."""
        # While a repartition runs, a key's entries may be in its old partition's log and its new one's.
        layouts = [await self._ready(), *([self._arriving] if self._arriving is not None else [])]
        unique = list(dict.fromkeys(keys))

        async def one(partition: _Partition, members: Keys) -> Any:
            script_keys = (partition.log, partition.meta)
            args = ("1" if keep_deletions else "0", *members)
            return await self._read(lambda: self._forget_script(keys=script_keys, args=args))

        await asyncio.gather(
            *(
                one(partitions[number], members)
                for partitions in layouts
                for number, members in by_partition(partitions, unique).items()
            )
        )

    # --- watch -------------------------------------------------------------------------------------

    async def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncIterator[Change]:
        """Changes strictly after `after` in revision order (see the module docstring for the watermark);
        CursorExpired when a partition's log no longer holds a change after the cursor, or the cursor is
        ahead of every partition (the cluster lost data), or a repartition deleted the logs that held the
        changes after it; InvalidCursor for a malformed cursor. Each round also reads the layout, after
        the watermark: a layout that appeared since (a repartition began) is read from the cursor on."""
        cursor = None if after is None else _parse_cursor(after)
        await self._ready()
        positions: dict[str, int] | None = None
        heads: dict[str, int] = {}  # the left layout's logs still to read to their last change
        pending: list[tuple[int, int, Change]] = []
        outage = Outage(self._watch_outage_budget)
        while not self._closed:
            end_if_cancelled()
            try:
                if cursor is None:
                    cursor = int(await self.head_cursor())
                if positions is None:
                    layouts = await self._refresh_layouts()
                    if after is not None:
                        await self._check_resumable(layouts, cursor)
                    positions = {}
                    heads = self._rewatch(positions, layouts, cursor)
                logs = list(positions)
                read = await self._read_after(logs, list(positions.values()), WATCH_BATCH, self._descriptor)
                watermark, (descriptor, *batches) = read
            except StoreUnavailable as exc:
                await outage.retry_or_raise(exc)
                continue
            outage.reset()
            entries: Replies
            for number, (log, entries) in enumerate(zip(logs, batches, strict=True)):
                if not entries and positions[log] < heads.get(log, 0):
                    raise CursorExpired("the namespace was repartitioned and its old change log is gone")
                for entry_id, fields in entries:
                    revision = _revision(entry_id)
                    if int(fields[b"p"]) > positions[log]:
                        raise CursorExpired(f"the change log no longer holds the change after {cursor}")
                    positions[log] = revision
                    heapq.heappush(pending, (revision, number, self._change(revision, fields)))
            limit = _final_below(watermark, batches, WATCH_BATCH)
            while pending and pending[0][0] < limit:
                revision, _, change = heapq.heappop(pending)
                if revision <= cursor:
                    raise CursorExpired(
                        f"a change below cursor {cursor} appeared late (a clock stepped back)"
                    )
                cursor = revision
                if change.key.startswith(prefix):
                    yield change
            if descriptor is not None:
                heads = self._rewatch(positions, Layouts.decode(descriptor), cursor)
            if limit == watermark:
                await asyncio.sleep(self._watch_poll)  # the poll interval: nothing more to read yet
        raise StoreUnavailable("the store is closed")

    def _rewatch(self, positions: dict[str, int], layouts: Layouts, cursor: int) -> dict[str, int]:
        """Fit a watch's logs (log -> position) to `layouts`, read after the watermark of the round that
        delivered up to `cursor`: a log that appeared is read from the cursor on (its changes all lie above
        that watermark); a log of the layout a repartition left is read up to its last change; a log gone
        past that (the watch was behind when the logs were deleted) ends the watch with CursorExpired.
        Returns the left layout's logs still to read, with their last change."""
        heads: dict[str, int] = {}
        if layouts.dropped is not None:
            dropped = layout_partitions(self.namespace, layouts.dropped)
            for partition, head in zip(dropped, layouts.dropped_heads, strict=True):
                if positions.setdefault(partition.log, cursor) < head:
                    heads[partition.log] = head
        wanted = {
            partition.log
            for layout in layouts.watched()
            for partition in layout_partitions(self.namespace, layout)
        }
        for log in list(positions):
            if log not in wanted and log not in heads:
                if cursor < layouts.expired_below:
                    raise CursorExpired("the namespace was repartitioned and its old change log is gone")
                del positions[log]
        for log in wanted:
            positions.setdefault(log, cursor)
        return heads

    async def _check_resumable(self, layouts: Layouts, cursor: int) -> None:
        """CursorExpired for a cursor below what the logs still hold after a repartition, or ahead of
        every partition's clock (the cluster lost data)."""
        if cursor < layouts.expired_below:
            raise CursorExpired(f"cursor {cursor} is older than the namespace's repartition")
        partitions = self._logged(layouts)

        async def lasts() -> Replies:
            pipeline = self._client.pipeline()
            for partition in partitions:
                pipeline.hget(partition.meta, "last")
            return await pipeline.execute()

        clocks = await self._read(lasts)
        stamped = (
            int(last) * SUFFIX + int(p.suffix) for p, last in zip(partitions, clocks, strict=True) if last
        )
        head = max(stamped, default=layouts.expired_below)
        if cursor > max(head, layouts.expired_below):
            raise CursorExpired(f"cursor {cursor} is ahead of the change log head {head}")

    async def _read_after(
        self, streams: Keys, positions: Positions, count: int, also: str | None = None
    ) -> tuple[int, Replies]:
        """(watermark, each stream's first `count` entries after its position): the masters' lowest TIME
        first, then the streams, so whatever commits after the read lands at or above the watermark. With
        `also`, the replies start with that key's value, read after the watermark too."""

        async def read() -> tuple[int, Replies]:
            watermark = await self._primaries_time()
            pipeline = self._client.pipeline()
            if also is not None:
                pipeline.get(also)
            for stream, position in zip(streams, positions, strict=True):
                pipeline.xrange(stream, f"({position}-0", "+", count=count)
            return watermark, await pipeline.execute()

        return await self._read(read)

    # --- audit journal -----------------------------------------------------------------------------

    async def audit_journal(self, after: int, limit: int) -> Journaled:
        """The audit entries after revision `after`, at most `limit`, merged from the partitions' journals
        in revision order behind the watch's watermark: only entries that no later commit can precede, so
        a reader that goes on after the last one never skips an entry. Entries read but not yet final (a
        commit in the last microseconds, a master whose clock is ahead) are waited for, for up to
        `failover_budget`: [] means none were committed when the call began, or they are still not final."""
        await self._ready()
        layouts = self._layouts.journaled()
        journals = [p.audit for layout in layouts for p in layout_partitions(self.namespace, layout)]
        deadline = asyncio.get_running_loop().time() + self._failover_budget
        while True:
            watermark, batches = await self._read_after(journals, [after] * len(journals), limit)
            final = _final_below(watermark, batches, limit)
            merged = heapq.merge(*([(_revision(i), fields[b"a"]) for i, fields in each] for each in batches))
            entries = [entry for entry in itertools.islice(merged, limit) if entry[0] < final]
            if entries or not any(batches) or asyncio.get_running_loop().time() > deadline:
                return entries
            ahead = min(_revision(each[0][0]) for each in batches if each) - watermark
            await asyncio.sleep(ahead / SUFFIX / MICROS + 0.001)  # till the watermark has passed the lowest

    _change = staticmethod(RedisStore._change)  # the same log entry fields as the single-node store

    async def close(self) -> None:
        self._closed = True
        await self._client.aclose()
        await self._replicas.aclose()
        await self._masters.close()
