"""The Redis store: one Lua script per write, one MULTI/EXEC per read, a Redis Stream as the change log.

Layout of a namespace `ns` (every key carries the hash tag `{ns}`, so a namespace lives in one cluster slot
and every script touches one slot only):

- `ms:{ns}:r:<key>` — a string per record, `<revision>:<expiry>:<value>`, the expiry in Unix microseconds
  or empty without a TTL (with one, the key also expires in Redis itself, so Redis evicts it). A string, so
  one MGET reads a whole batch and the value needs no per-field work.
- `ms:{ns}:rev` — a hash: `n` the revision counter (HINCRBY), `layout` the layout version, 2.
- `ms:{ns}:idx` — a sorted set of all keys, score 0, for prefix listing with ZRANGEBYLEX.
- `ms:{ns}:exp` — a sorted set of the keys that have a TTL, scored by expiry, so writes can clean up
  expired records and their index entries a few at a time (Redis's own eviction does not touch the index).
- `ms:{ns}:log` — the change log, a Redis Stream trimmed with `MAXLEN ~ retention`.

Each put/delete is ONE Lua script: check `if_match`, INCR the counter, XADD the change, write the record and
the index. Scripts run atomically, so the log order is the commit order and no write is lost or reordered.
Time comes from the Redis server (`TIME` inside the scripts), never from the client, so several server
processes on several hosts agree on TTLs.

Cursors: the stream entry of revision N gets the explicit ID `N-0`, and the cursor of that change is "N".
Revisions are consecutive (every INCR comes with exactly one XADD in the same script), which makes gaps
detectable exactly: a watch that reads an entry other than `cursor + 1` next knows the log was trimmed past
it and raises CursorExpired. A cursor ahead of the counter (the log lost entries, e.g. a restart without
persistence) is CursorExpired too: the caller must resynchronise either way.

Connections: every command but the blocking watch reads goes over one multiplexed connection, TLS or not
(redis_pipeline.py: redis-py's pool costs ~10x the CPU per command under concurrency); watch reads use
redis-py, each watch over a connection of its own, closed when the watch ends.

Settings: every keyword of `open` may also come from the URL's query (`redis://host/0?retention=10000`, see
_url_settings.py). The URL's other query parameters go to redis-py, which must take them: `db`, and
`max_connections`, `retry_on_timeout`, `socket_keepalive`, `socket_read_size`, which only redis-py's watch
connections follow; on rediss://, the `ssl_*` ones, which every connection follows. Parameters the store
controls itself are refused: `socket_connect_timeout` (the store's is `connect_timeout`), `protocol` and
`legacy_responses` (they change the shape of the replies the store reads).

Failure policy: a URL the server refuses (wrong or missing password, an ACL user without the needed
permissions, a database number the server does not have) is reported as StoreMisconfigured by the first
call (open does not contact the server). Connection errors, timeouts and "loading" become StoreUnavailable
within about `socket_timeout` (default 1 s), never a hang. Reads retry twice on fast connection errors (a
connection the server closed); writes never retry automatically, because a write whose reply was lost may
have committed and blindly resending it would apply it twice. The same RedisStore reconnects by itself once
the server is back. `watch` hides outages shorter than `watch_outage_budget`: it retries with backoff and
resumes from its last cursor, without gaps or duplicates; a longer outage ends the iteration with
StoreUnavailable and the caller resumes with the last cursor it saw.

Layout 1 (until 2026-11) kept each record in a hash (`r`, `v`, `x`) and the counter as a plain integer.
The first call of a store converts a layout-1 namespace in place, a few hundred records per atomic script
(`_MIGRATE`); every call waits for that. Its first step turns the counter into a hash, so a server still
running layout-1 code fails every write from then on (INCR on a hash is WRONGTYPE, before the script wrote
anything) and every read of a converted record, instead of writing records layout 2 cannot read. Stop the
old servers when upgrading; nothing they acknowledged is lost. This conversion stays here, not declared as
a slice's migration (kit/migrations.py): it changes how the store itself keeps revisions and expiries, below
the Store protocol those migrations run through, and it only ever goes one way.

Capabilities: `durable` is whatever the caller states (`durable=True` only for a server with `appendonly yes`
and `appendfsync always` and no failover that can lose acknowledged writes); the store cannot verify it, so
it defaults to False. Eviction policies other than `noeviction` can drop records: don't use them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript

from microstate.server.cancellation import end_if_cancelled
from microstate.server.store._shared import check_ttl, guard, require_positive
from microstate.server.store._url_settings import settings_from_url
from microstate.server.store.base import (
    ABSENT,
    Capabilities,
    Change,
    ChangeKind,
    CursorExpired,
    IfMatch,
    InvalidCursor,
    Page,
    PreconditionFailed,
    Record,
    StoreMisconfigured,
    StoreUnavailable,
    check_namespace,
    expected_revision,
)
from microstate.server.store.redis_pipeline import RedisPipeline

T = TypeVar("T")

CURSOR_PATTERN = re.compile(r"0|[1-9][0-9]{0,18}")
MICROS = 1_000_000
_KIND_CODES = {b"c": ChangeKind.CREATED, b"u": ChangeKind.UPDATED, b"d": ChangeKind.DELETED}

# Errors that mean "the server is not usable right now", as opposed to a bug in a command.
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError (server replaying its AOF)
    rexc.TimeoutError,
    rexc.ReadOnlyError,  # a replica after failover
    OSError,
)
_UNAVAILABLE_REPLIES = ("MISCONF", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "OOM")
# ...and those that mean the URL itself is wrong: retrying cannot help (checked first: AuthenticationError
# is a ConnectionError).
_MISCONFIGURED_ERRORS: tuple[type[Exception], ...] = (
    rexc.AuthenticationError,  # NOAUTH, WRONGPASS, or a password for a server that has none
    rexc.AuthorizationError,
    rexc.NoPermissionError,  # NOPERM: the URL's ACL user may not run what the store needs
)
_MISCONFIGURED_REPLIES = (
    "DB index is out of range",  # SELECT of a database the server does not have
    "MOVED ",  # a Redis Cluster node that does not own the key's slot (ping refuses cluster nodes first)
    "CLUSTERDOWN",
)

REDIS_PY_URL_OPTIONS: Final = frozenset(
    {"db", "max_connections", "retry_on_timeout", "socket_keepalive", "socket_read_size"}
)
"""The query parameters of redis-py's own that a store URL may carry besides the store's settings (see the
module docstring); rediss:// URLs may carry REDIS_PY_TLS_URL_OPTIONS too."""
REDIS_PY_TLS_URL_OPTIONS: Final = frozenset(
    name for name in inspect.signature(SSLConnection.__init__).parameters if name.startswith("ssl_")
)


def _redis_py_takes(url: str, key: str) -> bool:
    if key in REDIS_PY_URL_OPTIONS:
        return True
    return key in REDIS_PY_TLS_URL_OPTIONS and urlsplit(url).scheme.lower() == "rediss"


# --- Lua ---------------------------------------------------------------------------------------------
# Shared prologue: server time in microseconds (exact in a Lua double until year 2255), integer formatting
# that never falls into Lua's %.14g exponent notation, parse() of a record string into {revision, expiry or
# '', value} (nil for none), the "is this record live" rule, and forget(), which removes a dead record with
# its index and expiry entries.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(n) return string.format('%.0f', n) end
local function parse(raw)
  if not raw then return nil end
  local a = string.find(raw, ':', 1, true)
  local b = string.find(raw, ':', a + 1, true)
  return {string.sub(raw, 1, a - 1), string.sub(raw, a + 1, b - 1), string.sub(raw, b + 1)}
end
local function live(h) return h and (h[2] == '' or tonumber(h[2]) > now) end
local function write(record, revision, expires, value)
  local raw = revision .. ':' .. expires .. ':' .. value
  if expires == '' then
    redis.call('SET', record, raw)
  else
    redis.call('SET', record, raw, 'PXAT', int(math.ceil(tonumber(expires) / 1000)))
  end
end
local function forget(index, expiries, record, key)
  redis.call('DEL', record)
  redis.call('ZREM', index, key)
  redis.call('ZREM', expiries, key)
end
"""

# The common head of both write scripts. KEYS: record, counter, index, log, expiries. ARGV: key, mode
# (any|absent|rev), expected revision, log retention, record key prefix, then the script's own.
# Checks `if_match` against the live record (base.require_precondition's rule, restated to hold atomically:
# an expired record counts as absent) and returns {0, current...} or {0} if it does not hold. Defines
# next_revision(), which continues after the log's last entry if the counter was lost (evicted, deleted), so
# XADD's explicit IDs keep increasing; and purge_expired(), which forgets a few records whose TTL passed, so a
# namespace of short-lived records that nobody lists does not grow its index forever (each write cleans up
# more than it can leave behind).
# The precondition check of both write scripts (KEYS[1] the record; ARGV[2], ARGV[3] mode and revision).
_CONDITION = """
local h = parse(redis.call('GET', KEYS[1]))
local is_live = live(h)
if (ARGV[2] == 'absent' and is_live) or (ARGV[2] == 'rev' and not (is_live and h[1] == ARGV[3])) then
  if is_live then return {0, h[1], h[2], h[3]} end
  return {0}
end
"""
# purge_expired() of both write scripts (KEYS[3] the index, KEYS[5] the expiries, ARGV[5] the record prefix).
_PURGE = """
local function purge_expired()
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', int(now), 'LIMIT', 0, 8)) do
    local record = ARGV[5] .. key
    if live(parse(redis.call('GET', record))) then
      redis.call('ZREM', KEYS[5], key)
    else
      forget(KEYS[3], KEYS[5], record, key)
    end
  end
end
"""
_WRITE_PROLOGUE = (
    _PROLOGUE
    + _CONDITION
    + _PURGE
    + """
local function next_revision()
  if redis.call('HEXISTS', KEYS[2], 'n') == 0 then
    local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
    if last[1] then redis.call('HSET', KEYS[2], 'n', string.match(last[1][1], '^(%d+)')) end
  end
  return redis.call('HINCRBY', KEYS[2], 'n', 1)
end
"""
)

# KEYS[6]: the audit journal, a stream never trimmed, its IDs the revisions. ARGV 6, 7, 8: value, ttl in
# microseconds or '', audit entry or ''. Returns {1, revision, expires_us or '', commit_us}. The journal is
# written before the record: a script that fails part-way has not changed the record without its entry.
_PUT = (
    _WRITE_PROLOGUE
    + """
local rev = next_revision()
local expires = ''
if ARGV[7] ~= '' then expires = int(now + tonumber(ARGV[7])) end
local kind = 'c'
if is_live then kind = 'u' end
if ARGV[8] ~= '' then redis.call('XADD', KEYS[6], int(rev) .. '-0', 'a', ARGV[8]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], int(rev) .. '-0',
  'k', ARGV[1], 'o', kind, 'v', ARGV[6], 'x', expires, 't', int(now))
write(KEYS[1], int(rev), expires, ARGV[6])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if expires == '' then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], expires, ARGV[1])
end
purge_expired()
return {1, int(rev), expires, int(now)}
"""
)

# What both stores' forget scripts share (redis_cluster.py has the other): `first_key`, set before this,
# is the ARGV index of the first doomed key; ARGV[1] is keep_deletions ("1"/"0"). field() finds a log
# entry's field (value and index), doomed() says whether an entry goes, rebuild() makes the stream anew from
# the entries it keeps, with their own ids: XDEL only flags an entry, its bytes stay in the stream's node and
# an RDB (or an AOF's RDB preamble) would write them out. A rebuild pauses Redis for the whole log.
FORGET_LUA = """
local doomed_keys = {}
for i = first_key, #ARGV do doomed_keys[ARGV[i]] = true end
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1], j + 1 end
  end
end
local function doomed(fields)
  return doomed_keys[field(fields, 'k')] and (ARGV[1] == '0' or field(fields, 'o') ~= 'd')
end
local function rebuild(stream, entries)
  redis.call('DEL', stream)
  for _, entry in ipairs(entries) do
    redis.call('XADD', stream, entry[1], unpack(entry[2]))
  end
end
"""
# forget(): KEYS log, forgotten, counter; ARGV keep_deletions ("1"/"0"), rebuild limit, retention, then the
# keys. Each change-log entry of those keys (but deletions, when kept) leaves the stream and its revision
# joins the forgotten set, in one atomic step, so a watch that meets the hole finds it there; a short stream
# is then rebuilt without the removed entries' bytes. Forgotten revisions older than the retained log's
# length are dropped: a cursor that old is expired anyway.
_FORGET = (
    "local first_key = 4\n"
    + FORGET_LUA
    + """
local removed = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  if doomed(entry[2]) then
    local rev = tonumber(string.match(entry[1], '^(%d+)'))
    redis.call('ZADD', KEYS[2], rev, rev)
    redis.call('XDEL', KEYS[1], entry[1])
    removed = removed + 1
  end
end
if removed > 0 and redis.call('XLEN', KEYS[1]) <= tonumber(ARGV[2]) then
  rebuild(KEYS[1], redis.call('XRANGE', KEYS[1], '-', '+'))
end
local head = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (head - tonumber(ARGV[3])))
return removed
"""
)

FORGET_REBUILD_LIMIT = 10_000
"""Entries up to which forget rebuilds the change-log stream (~0.1 s of Redis's time on a loaded machine)."""

# ARGV 6: audit entry or ''. Returns {1, revision} when deleted, {2} when absent (and if_match allowed that).
_DELETE = (
    _WRITE_PROLOGUE
    + """
if not is_live then
  -- an expired leftover: clean it up quietly, it is not a change anyone can observe
  forget(KEYS[3], KEYS[5], KEYS[1], ARGV[1])
  return {2}
end
local rev = next_revision()
if ARGV[6] ~= '' then redis.call('XADD', KEYS[6], int(rev) .. '-0', 'a', ARGV[6]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], int(rev) .. '-0', 'k', ARGV[1], 'o', 'd', 't', int(now))
forget(KEYS[3], KEYS[5], KEYS[1], ARGV[1])
purge_expired()
return {1, int(rev)}
"""
)

# KEYS: index, expiries. ARGV: record key prefix, ZRANGEBYLEX min, max, how many live records to return.
# Walks the index from min, skipping (and forgetting) members whose record expired or vanished, until it has
# enough live records or the range ends. Returns {{key, record string}, ...}.
_LIST = (
    _PROLOGUE
    + """
local out = {}
local want = tonumber(ARGV[4])
local start = ARGV[2]
while #out < want do
  local members = redis.call('ZRANGEBYLEX', KEYS[1], start, ARGV[3], 'LIMIT', 0, want - #out + 16)
  if #members == 0 then break end
  for _, member in ipairs(members) do
    local record = ARGV[1] .. member
    local raw = redis.call('GET', record)
    if live(parse(raw)) then
      out[#out + 1] = {member, raw}
      if #out == want then break end
    else
      forget(KEYS[1], KEYS[2], record, member)
    end
  end
  start = '(' .. members[#members]
end
return out
"""
)


# KEYS: counter, index, expiries. ARGV: record key prefix, ZRANGEBYLEX min, batch size.
# Converts up to a batch of layout-1 records (hashes) from min on to record strings, keeping their TTLs, and
# forgets the dead ones. The counter becomes a hash first. Returns {1} once the layout is 2 (it sets it when
# the index has no more members), else {0, last member seen}.
_MIGRATE = (
    _PROLOGUE
    + """
local counter_type = redis.call('TYPE', KEYS[1])['ok']
if counter_type == 'hash' and redis.call('HGET', KEYS[1], 'layout') == '2' then return {1} end
if counter_type == 'string' then
  local n = redis.call('GET', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'n', n)
end
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(members) do
  local record = ARGV[1] .. member
  if redis.call('TYPE', record)['ok'] == 'hash' then
    local h = redis.call('HMGET', record, 'r', 'x', 'v')
    if h[1] and (not h[2] or tonumber(h[2]) > now) then
      write(record, h[1], h[2] or '', h[3])
    else
      forget(KEYS[2], KEYS[3], record, member)
    end
  end
end
if #members < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'layout', '2')
  return {1}
end
return {0, members[#members]}
"""
)
MIGRATION_BATCH = 256


def _unavailable(exc: Exception) -> StoreUnavailable | None:
    """The StoreUnavailable an error stands for, or None if it is not an availability problem."""
    if isinstance(exc, _MISCONFIGURED_ERRORS) or (
        isinstance(exc, rexc.ResponseError) and any(reply in str(exc) for reply in _MISCONFIGURED_REPLIES)
    ):
        return StoreMisconfigured(f"redis refused the store URL: {exc}")
    if isinstance(exc, _UNAVAILABLE_ERRORS) or (
        isinstance(exc, rexc.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)
    ):
        return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")
    return None


async def _guard(call: Awaitable[T]) -> T:
    """Await a redis call, turning availability errors into StoreUnavailable (chained)."""
    return await guard(call, _unavailable)


def redis_client(
    url: str, name: str, *, socket_timeout: float, connect_timeout: float, health_check_interval: int
) -> aioredis.Redis:
    """A redis-py client for a store: named `name` in CLIENT LIST, failing within the timeouts, and never
    resending a command by itself (writes must not be resent blindly: see the module docstring)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )


async def _forget_failure(_error: Exception) -> None:
    """redis-py already dropped the failed connection; the next attempt checks out a fresh one."""


def _parse_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or not CURSOR_PATTERN.fullmatch(cursor):
        raise InvalidCursor(f"not a Redis store cursor: {cursor!r}")
    return int(cursor)


def _expiry(raw: bytes) -> float | None:
    return int(raw) / MICROS if raw else None


def _record(key: str, raw: bytes) -> Record:
    """The record a record string holds (batch_get has this inline, with the expiry check)."""
    revision, expires, value = raw.split(b":", 2)
    return Record(key, value, int(revision), _expiry(expires))


def _current(key: str, reply: Sequence[Any]) -> Record | None:
    """The record carried by a failed-precondition reply {0, revision, expires, value} (or {0})."""
    return Record(key, reply[3], int(reply[1]), _expiry(reply[2])) if len(reply) > 1 else None


class RedisStore:
    """A Store on Redis (see the module docstring for layout, cursors and failure policy)."""

    def __init__(
        self,
        client: aioredis.Redis,
        blocking_client: aioredis.Redis,
        namespace: str,
        *,
        retention: int,
        durable: bool,
        watch_block: float,
        watch_outage_budget: float,
        pipeline: RedisPipeline | None = None,
    ) -> None:
        self._client = client
        self._pipeline = pipeline  # every command but the blocking watch reads; None: all on redis-py
        self._blocking = blocking_client
        self.namespace = namespace
        self.retention = retention
        self.capabilities = Capabilities(durable=durable, shared=True, native_ttl=True)
        self._watch_block_ms = max(1, int(watch_block * 1000))
        self._watch_outage_budget = watch_outage_budget
        base = f"ms:{{{namespace}}}:"
        self._record_prefix = f"{base}r:"
        self._counter_key = f"{base}rev"
        self._index_key = f"{base}idx"
        self._log_key = f"{base}log"
        self._expiries_key = f"{base}exp"
        self._audit_key = f"{base}audit"
        self._forgotten_key = f"{base}forgot"
        self._put_script = client.register_script(_PUT)
        self._delete_script = client.register_script(_DELETE)
        self._list_script = client.register_script(_LIST)
        self._migrate_script = client.register_script(_MIGRATE)
        self._forget_script = client.register_script(_FORGET)
        self._layout_checked = False  # set once this namespace is known to be in layout 2
        self._single_node_checked = False  # set once a ping found a server that is not a cluster node
        self._layout_lock = asyncio.Lock()
        # Reads are idempotent: retry them on fast connection errors (a pooled connection the server
        # closed). Timeouts are not retried, so a hung server costs one socket_timeout, not several.
        self._read_retry = Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.2),
            retries=2,
            supported_errors=(rexc.ConnectionError,),
        )
        self._watch_backoff = ExponentialWithJitterBackoff(base=0.05, cap=1.0)
        self._closed = False

    @classmethod
    @settings_from_url("redis-py", _redis_py_takes)
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        retention: int = 100_000,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        health_check_interval: int = 10,
        durable: bool = False,
        watch_block: float = 1.0,
        watch_outage_budget: float = 30.0,
    ) -> RedisStore:
        """A store for `namespace` on the Redis at `url` (redis://, rediss:// or unix://).

        Does not contact the server: it may be down now and come up later; call `ping()` to check.
        `retention` is how many changes the log keeps, approximately (Redis trims whole stream nodes),
        and at least that many. `watch_block` is how long one blocking read waits on the server. Every keyword
        may also come from the URL's query (see the module docstring).
        """
        check_namespace(namespace)
        require_positive(
            retention=retention,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            watch_block=watch_block,
        )
        parts = urlsplit(url)
        database = parts.path.replace("/", "")
        if parts.scheme != "unix" and database and not database.isdigit():  # redis-py would ignore it: db 0
            raise ValueError(f"bad Redis store URL: the path must be a database number, not {database!r}")
        connect = partial(
            redis_client,
            url,
            f"microstate-{namespace}",
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
        )
        client = connect(socket_timeout=socket_timeout)
        # Blocking reads get their own pool so a long XREAD BLOCK never holds a connection other calls need;
        # its socket timeout must outlast the block time.
        blocking = connect(socket_timeout=watch_block + socket_timeout)
        # Commands share one multiplexed connection (redis_pipeline.py) with the same timeouts, TLS included.
        pipeline = RedisPipeline.for_url(
            url,
            timeout=socket_timeout,
            connect_timeout=connect_timeout,
            client_name=f"microstate-{namespace}-pipeline",
        )
        return cls(
            client,
            blocking,
            namespace,
            retention=retention,
            durable=durable,
            watch_block=watch_block,
            watch_outage_budget=watch_outage_budget,
            pipeline=pipeline,
        )

    # --- reads -----------------------------------------------------------------------------------

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        return await _guard(self._read_retry.call_with_retry(call, _forget_failure))

    def _run_script(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Awaitable[Any]:
        if self._pipeline is not None:
            return self._pipeline.run_script(script.sha, script.script, keys, args)
        return script(keys=keys, args=args)

    async def _transaction(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        if self._pipeline is not None:
            return await self._pipeline.transaction(commands)
        transaction = self._client.pipeline(transaction=True)
        for command in commands:
            transaction.execute_command(*command)
        return await transaction.execute()

    def _execute(self, *command: str) -> Awaitable[Any]:
        if self._pipeline is not None:
            return self._pipeline.execute(*command)
        return self._client.execute_command(*command)  # type: ignore[no-untyped-call]

    def _record_key(self, key: str) -> str:
        return self._record_prefix + key

    async def get(self, key: str) -> Record | None:
        """One GET. Only a record with a TTL needs Redis's clock, read atomically with the record: that one
        is read again by batch_get (most records, profiles, have no TTL; they take one plain command)."""
        if not self._layout_checked:
            await self._check_layout()
        raw = await self._read(lambda: self._execute("GET", self._record_prefix + key))
        if raw is None:
            return None
        record = _record(key, raw)
        if record.expires_at is not None:
            return (await self.batch_get([key])).get(key)
        return record

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        """One MULTI/EXEC: the server's clock and one MGET of every record, in one atomic step (so the
        batch is a consistent snapshot, judged live by Redis's own time). Not a Lua script: moving each
        value into and out of Lua cost Redis ~4.5 µs a key, three times the plain commands."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        if not self._layout_checked:
            await self._check_layout()
        mget = ("MGET", *[self._record_prefix + key for key in unique])
        (seconds, micros), raws = await self._read(lambda: self._transaction([("TIME",), mget]))
        now = int(seconds) * MICROS + int(micros)
        records = {}
        make = Record._make  # _record() inlined, and Record's __new__ skipped: this runs once per key read
        for key, raw in zip(unique, raws, strict=True):
            if raw is not None:
                revision, expires, value = raw.split(b":", 2)
                if not expires:
                    records[key] = make((key, value, int(revision), None))
                elif int(expires) > now:
                    records[key] = make((key, value, int(revision), int(expires) / MICROS))
        return records

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if not self._layout_checked:
            await self._check_layout()
        low, high = self._lex_range(prefix, after)
        # One more than asked, to know whether another page exists without returning an empty last page.
        script_args: list[bytes | str | int] = [self._record_prefix, low, high, limit + 1]
        keys = (self._index_key, self._expiries_key)
        rows = await self._read(lambda: self._run_script(self._list_script, keys, script_args))
        records = [_record(member.decode(), raw) for member, raw in rows[:limit]]
        return Page(records, records[-1].key if len(rows) > limit else None)

    @staticmethod
    def _lex_range(prefix: str, after: str | None) -> tuple[bytes, bytes]:
        """ZRANGEBYLEX bounds for keys starting with `prefix` and greater than `after`.

        Members compare as UTF-8 bytes, which orders like Python strings; 0xFF never occurs in UTF-8, so
        `prefix + 0xFF` is above every key that starts with `prefix`.
        """
        encoded = prefix.encode()
        low = b"(" + after.encode() if after is not None and after >= prefix else b"[" + encoded
        high = b"(" + encoded + b"\xff" if prefix else b"+"
        return low, high

    async def head_cursor(self) -> str:
        return str(await self._head_revision())

    async def _head_revision(self) -> int:
        if not self._layout_checked:
            await self._check_layout()
        raw = await self._read(lambda: self._execute("HGET", self._counter_key, "n"))
        return int(raw or 0)

    async def _check_layout(self) -> None:
        """Convert a layout-1 namespace to layout 2 (see the module docstring), once per store."""
        async with self._layout_lock:
            if self._layout_checked:
                return
            keys = (self._counter_key, self._index_key, self._expiries_key)
            start = b"-"
            while True:
                args = (self._record_prefix, start, MIGRATION_BATCH)
                reply = await self._read(partial(self._run_script, self._migrate_script, keys, args))
                if reply[0] == 1:
                    break
                start = b"(" + reply[1]
            self._layout_checked = True

    async def ping(self) -> None:
        await self._read(lambda: self._execute("PING"))
        if not self._single_node_checked:
            info = await self._read(lambda: self._execute("INFO", "cluster"))
            if b"cluster_enabled:1" in info:
                raise StoreMisconfigured(
                    "redis: this server is a Redis Cluster node, and a redis:// store speaks to one node"
                    " only; name the cluster's nodes in a redis+cluster://host1:port,host2:port URL"
                )
            self._single_node_checked = True

    # --- writes ----------------------------------------------------------------------------------

    def _write_keys(self, key: str) -> tuple[str, ...]:
        return (
            self._record_key(key),
            self._counter_key,
            self._index_key,
            self._log_key,
            self._expiries_key,
            self._audit_key,
        )

    def _write_args(self, key: str, if_match: IfMatch) -> tuple[str | int, ...]:
        """The ARGV both write scripts start with: key, mode, expected revision, retention, record prefix."""
        if if_match is None:
            condition = ("any", "")
        elif if_match is ABSENT:
            condition = ("absent", "")
        else:
            condition = ("rev", str(expected_revision(if_match)))
        return (key, *condition, self.retention, self._record_prefix)

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
        if not self._layout_checked:
            await self._check_layout()
        ttl_micros = "" if ttl is None else str(max(1, round(ttl * MICROS)))
        args = (*self._write_args(key, if_match), value, ttl_micros, audit or b"")
        reply: list[Any] = await _guard(self._run_script(self._put_script, self._write_keys(key), args))
        if reply[0] == 0:
            raise PreconditionFailed(key, _current(key, reply))
        return Record(key, value, int(reply[1]), _expiry(reply[2]))

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        if not self._layout_checked:
            await self._check_layout()
        args = (*self._write_args(key, if_match), audit or b"")
        reply: list[Any] = await _guard(self._run_script(self._delete_script, self._write_keys(key), args))
        if reply[0] == 0:
            raise PreconditionFailed(key, _current(key, reply))
        return bool(reply[0] == 1)

    async def audit_journal(self, after: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        reply: Any = await self._read(
            lambda: self._execute("XRANGE", self._audit_key, f"{after + 1}-0", "+", "COUNT", str(limit))
        )
        journal: builtins.list[tuple[int, bytes]] = []
        for entry_id, fields in reply:
            values = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
            revision = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            journal.append((int(revision.partition("-")[0]), bytes(values[b"a"])))
        return journal

    async def forget(self, keys: Sequence[str], *, keep_deletions: bool = True) -> None:
        """Remove the change-log entries of `keys` — but their deletions with `keep_deletions`, so watchers
        still learn that the keys went — remembering their revisions as forgotten, so a watch passes the hole
        instead of taking it for a trimmed log. A log of at most FORGET_REBUILD_LIMIT entries is rebuilt
        without the removed entries' bytes; in a longer one they stay in their stream node (unreadable, but
        in memory and in an RDB) until retention trims the node. One script: Redis pauses while it scans the
        log (~0.2 s per 50,000 entries on a loaded 2-core machine). What Redis persisted (AOF, RDB) keeps
        the old values until it is rewritten (SECURITY.md)."""
        if not self._layout_checked:
            await self._check_layout()
        args = ["1" if keep_deletions else "0", FORGET_REBUILD_LIMIT, self.retention, *keys]
        script_keys = [self._log_key, self._forgotten_key, self._counter_key]
        await _guard(self._run_script(self._forget_script, script_keys, args))

    async def _forgotten(self, cursor: int, revision: int) -> bool:
        """Whether every revision between `cursor` and `revision` was forgotten (not trimmed, not lost)."""
        low, high = str(cursor + 1), str(revision - 1)
        count = await self._read(lambda: self._execute("ZCOUNT", self._forgotten_key, low, high))
        return int(count) == revision - cursor - 1

    # --- watch -----------------------------------------------------------------------------------

    async def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncIterator[Change]:
        """Changes strictly after `after`, in commit order, filtered by prefix.

        `after=None` starts after the head as it is at the first iteration (read before the first blocking
        read, so nothing committed in between is missed). Outages shorter than `watch_outage_budget` are
        retried with backoff and resumed from the last cursor, without gaps or duplicates; a longer one raises
        StoreUnavailable. Raises CursorExpired when the log no longer holds the change after the cursor
        (trimmed, or the store lost data) and InvalidCursor for a malformed cursor.
        """
        cursor = None if after is None else _parse_cursor(after)
        down_since: float | None = None
        failures = 0
        async with self._watch_connection() as blocking:
            while not self._closed:
                end_if_cancelled()
                try:
                    if cursor is None:
                        cursor = await self._head_revision()
                    # After every (re)connect, check the cursor against the head: the server may lose data.
                    entries = await self._entries_after(
                        blocking, cursor, check_head=failures > 0 or after is not None
                    )
                except StoreUnavailable:
                    now = time.monotonic()
                    down_since = now if down_since is None else down_since
                    if now - down_since > self._watch_outage_budget:
                        raise
                    failures += 1
                    await asyncio.sleep(self._watch_backoff.compute(failures))  # backoff before reconnecting
                    continue
                down_since, failures, after = None, 0, None
                for entry_id, fields in entries:
                    revision = int(entry_id.partition(b"-")[0])
                    if revision != cursor + 1 and not await self._forgotten(cursor, revision):
                        raise CursorExpired(
                            f"the change log no longer holds the change after cursor {cursor}"
                        )
                    cursor = revision
                    change = self._change(revision, fields)
                    if change.key.startswith(prefix):
                        yield change
        raise StoreUnavailable("the store is closed")

    @contextlib.asynccontextmanager
    async def _watch_connection(self) -> AsyncIterator[aioredis.Redis]:
        """A client on one connection of the blocking pool, for one watch's reads, closed when the watch ends.

        Released to the pool instead, the connection would stay open, idle, after its watch had gone: one
        more for every stream that ever ended while its watch was between two reads.
        """
        client = self._blocking.client()
        try:
            yield client
        finally:
            if client.connection is not None:
                await client.connection.disconnect(nowait=True)
            await client.aclose()

    async def _entries_after(self, blocking: aioredis.Redis, cursor: int, *, check_head: bool) -> Any:
        """The next log entries after `cursor`, [(id, fields), ...], waiting up to `watch_block` for some."""
        if check_head:
            head = await self._head_revision()
            if cursor > head:
                raise CursorExpired(f"cursor {cursor} is ahead of the change log head {head}")
        reply: Any = await _guard(
            blocking.xread({self._log_key: f"{cursor}-0"}, count=256, block=self._watch_block_ms)
        )
        return reply[0][1] if reply else []

    @staticmethod
    def _change(revision: int, fields: dict[bytes, bytes]) -> Change:
        key = fields[b"k"].decode()
        kind = _KIND_CODES[fields[b"o"]]
        value = None if kind is ChangeKind.DELETED else fields[b"v"]
        record = None if value is None else Record(key, value, revision, _expiry(fields[b"x"]))
        return Change(kind, key, record, str(revision), int(fields[b"t"]) / MICROS)

    async def close(self) -> None:
        self._closed = True
        if self._pipeline is not None:
            await self._pipeline.close()
        await self._client.aclose()
        await self._blocking.aclose()
