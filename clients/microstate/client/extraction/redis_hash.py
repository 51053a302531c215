"""`RedisHashAdapter`: a slice's legacy side as one Redis hash per record, with its outbox, on one Redis.

Layout under a prefix P (the demo's is "users:"): the record `P<key>` is a hash of the codec's columns (an
absent value is an absent field; the key column is always stored), and the sorted set `P~index` holds every
key at score 0 so a scan walks them in order (ZRANGEBYLEX). `~` is outside the slice's key alphabet, so the
adapter's own keys never meet a record's. A write, its request id (`P~request:<id>`, kept `request_ttl`
seconds) and its outbox entry happen in one Lua script: all or nothing.

Outbox keys: `P~outbox:seq` (the sequence), `P~outbox:entry:<n>` (a hash per entry), `P~outbox:<dir>:pending`
(sorted by sequence), `P~outbox:<dir>:keyed:<key>` (the key's pending sequences, for superseding),
`P~outbox:<dir>:dead` and `P~outbox:counts` (totals by direction and outcome). The scripts name keys they
build from P, so this layout is for a single Redis, not a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Generic

import redis.asyncio as aioredis

from microstate.client.extraction.legacy import Direction, M, OutboxCounts, OutboxEntry, Outcome, RowCodec

DEFAULT_REQUEST_TTL = 14 * 24 * 3600
"""Seconds a request id is remembered (retries come well within it)."""

_APPEND = """
local function append(p, dir, other, key, rid, value, has_value)
  local seq = redis.call('INCR', p .. '~outbox:seq')
  local keyed = p .. '~outbox:' .. other .. ':keyed:' .. key
  for _, s in ipairs(redis.call('SMEMBERS', keyed)) do
    redis.call('ZREM', p .. '~outbox:' .. other .. ':pending', s)
    redis.call('DEL', p .. '~outbox:entry:' .. s)
    redis.call('HINCRBY', p .. '~outbox:counts', other .. ':superseded', 1)
  end
  redis.call('DEL', keyed)
  local entry = p .. '~outbox:entry:' .. seq
  redis.call('HSET', entry, 'key', key, 'request_id', rid, 'attempts', 0, 'last_error', '')
  if has_value == '1' then redis.call('HSET', entry, 'value', value) end
  redis.call('ZADD', p .. '~outbox:' .. dir .. ':pending', seq, seq)
  redis.call('SADD', p .. '~outbox:' .. dir .. ':keyed:' .. key, seq)
  redis.call('HINCRBY', p .. '~outbox:counts', dir .. ':appended', 1)
  return seq
end
"""

# ARGV: prefix, key, request id, ttl, outbox direction ('' none), other direction, value, mode ('put' or
# 'delete'), reverse sequence to settle ('' none), key column, then column/value pairs. Returns -2 when the
# reverse entry is no longer pending (nothing written), -1 for a repeated request id, else 1 if the record
# existed before, 0 if not.
_WRITE = (
    _APPEND
    + """
local p, key, rid, ttl, dir, other = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local value, mode, settles = ARGV[7], ARGV[8], ARGV[9]
if settles ~= '' then
  if redis.call('ZREM', p .. '~outbox:reverse:pending', settles) == 0 then return -2 end
  redis.call('SREM', p .. '~outbox:reverse:keyed:' .. key, settles)
  redis.call('DEL', p .. '~outbox:entry:' .. settles)
  redis.call('HINCRBY', p .. '~outbox:counts', 'reverse:applied', 1)
end
if not redis.call('SET', p .. '~request:' .. rid, key, 'NX', 'EX', ttl) then return -1 end
local record = p .. key
local existed = redis.call('EXISTS', record)
redis.call('DEL', record)
if mode == 'put' then
  local fields = {ARGV[10], key}
  for i = 11, #ARGV do table.insert(fields, ARGV[i]) end
  redis.call('HSET', record, unpack(fields))
  redis.call('ZADD', p .. '~index', 0, key)
else
  redis.call('ZREM', p .. '~index', key)
end
if dir ~= '' then append(p, dir, other, key, rid, value, mode == 'put' and '1' or '0') end
return existed
"""
)

# ARGV: prefix, direction, other direction, key, request id, value, has value ('1'/'0').
_APPEND_ONLY = _APPEND + "return append(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])"

# ARGV: prefix, direction, sequence, outcome, error. Returns 1 if it settled the entry, 0 if not pending.
_SETTLE = """
local p, dir, seq, outcome, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('ZREM', p .. '~outbox:' .. dir .. ':pending', seq) == 0 then return 0 end
local entry = p .. '~outbox:entry:' .. seq
redis.call('SREM', p .. '~outbox:' .. dir .. ':keyed:' .. redis.call('HGET', entry, 'key'), seq)
if outcome == 'dead_lettered' then
  redis.call('HSET', entry, 'last_error', err)
  redis.call('ZADD', p .. '~outbox:' .. dir .. ':dead', seq, seq)
else
  redis.call('DEL', entry)
end
redis.call('HINCRBY', p .. '~outbox:counts', dir .. ':' .. outcome, 1)
return 1
"""

# ARGV: prefix, direction, sequence, error.
_RETRY_LATER = """
local p, dir, seq, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not redis.call('ZSCORE', p .. '~outbox:' .. dir .. ':pending', seq) then return 0 end
local entry = p .. '~outbox:entry:' .. seq
redis.call('HINCRBY', entry, 'attempts', 1)
redis.call('HSET', entry, 'last_error', err)
return 1
"""


def _other(direction: Direction) -> Direction:
    return Direction.REVERSE if direction is Direction.FORWARD else Direction.FORWARD


class RedisHashAdapter(Generic[M]):
    """A `LegacyAdapter` and `OutboxStore` over hashes `<prefix><key>` on one Redis (`client`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        codec: RowCodec[M],
        *,
        prefix: str,
        request_ttl: int = DEFAULT_REQUEST_TTL,
    ) -> None:
        self._redis: Any = client  # redis-py's return types are unions of bytes and str
        self._codec = codec
        self._prefix = prefix
        self._request_ttl = request_ttl
        self._write = client.register_script(_WRITE)
        self._append_only = client.register_script(_APPEND_ONLY)
        self._settle = client.register_script(_SETTLE)
        self._retry_later = client.register_script(_RETRY_LATER)

    @classmethod
    def from_url(cls, url: str, codec: RowCodec[M], *, prefix: str, **options: Any) -> RedisHashAdapter[M]:
        return cls(aioredis.Redis.from_url(url), codec, prefix=prefix, **options)

    async def ensure_outbox(self) -> None:
        """Nothing to create (Redis keys appear on first write); here so every adapter starts alike."""

    async def close(self) -> None:
        await self._redis.aclose()

    def _message(self, key: str, fields: Mapping[bytes, bytes]) -> M:
        row = {name.decode(): value.decode() for name, value in fields.items()}
        return self._codec.from_row(key, row)

    # -- records -------------------------------------------------------------------------------------------

    async def get(self, key: str) -> M | None:
        fields = await self._redis.hgetall(self._prefix + key)
        return self._message(key, fields) if fields else None

    async def _run_write(
        self,
        key: str,
        request_id: str,
        outbox: Direction | None,
        mode: str,
        value: M | None,
        settles: OutboxEntry | None = None,
    ) -> int:
        pairs: list[Any] = []
        if value is not None:
            for column, cell in self._codec.to_row(value).items():
                if cell is not None:
                    pairs += [column, str(cell)]
        direction = outbox.value if outbox is not None else ""
        other = _other(outbox).value if outbox is not None else ""
        serialized = value.SerializeToString(deterministic=True) if value is not None else b""
        settled = "" if settles is None else settles.sequence
        arguments: list[Any] = [self._prefix, key, request_id, self._request_ttl, direction, other]
        arguments += [serialized, mode, settled, self._codec.key_column, *pairs]
        return int(await self._write(args=arguments))

    async def put(self, key: str, value: M, *, request_id: str, outbox: Direction | None = None) -> M:
        await self._run_write(key, request_id, outbox, "put", value)
        stored = await self.get(key)
        assert stored is not None
        return stored

    async def delete(self, key: str, *, request_id: str, outbox: Direction | None = None) -> bool:
        return await self._run_write(key, request_id, outbox, "delete", None) != 0

    async def scan(
        self, start: str = "", end: str = "", *, batch_size: int = 500
    ) -> AsyncIterator[tuple[str, M]]:
        low, high = ("[" + start) if start else "-", ("(" + end) if end else "+"
        while True:
            keys = [
                key.decode()
                for key in await self._redis.zrangebylex(self._prefix + "~index", low, high, 0, batch_size)
            ]
            if keys:
                async with self._redis.pipeline(transaction=True) as pipe:
                    for key in keys:
                        pipe.hgetall(self._prefix + key)
                    rows = await pipe.execute()
                for key, fields in zip(keys, rows, strict=True):
                    if fields:  # deleted between the two reads
                        yield key, self._message(key, fields)
            if len(keys) < batch_size:
                return
            low = "(" + keys[-1]

    # -- outbox --------------------------------------------------------------------------------------------

    def _outbox(self, *parts: str) -> str:
        return self._prefix + "~outbox:" + ":".join(parts)

    async def append(self, direction: Direction, key: str, request_id: str, value: bytes | None) -> int:
        arguments = [self._prefix, direction.value, _other(direction).value, key, request_id]
        return int(
            await self._append_only(args=[*arguments, value or b"", "1" if value is not None else "0"])
        )

    async def _entries(self, direction: Direction, index: str, limit: int) -> list[OutboxEntry]:
        return await self._read_entries(
            direction, await self._redis.zrange(self._outbox(direction.value, index), 0, limit - 1)
        )

    async def _read_entries(self, direction: Direction, sequences: list[bytes]) -> list[OutboxEntry]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for sequence in sequences:
                pipe.hgetall(self._outbox("entry", sequence.decode()))
            entries = await pipe.execute()
        return [
            OutboxEntry(
                int(sequence),
                direction,
                fields[b"key"].decode(),
                fields[b"request_id"].decode(),
                fields.get(b"value"),
                int(fields[b"attempts"]),
                fields[b"last_error"].decode(),
            )
            for sequence, fields in zip(sequences, entries, strict=True)
            if fields
        ]

    async def pending(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        return await self._entries(direction, "pending", limit)

    async def pending_for(self, direction: Direction, key: str) -> list[OutboxEntry]:
        members = await self._redis.smembers(self._outbox(direction.value, "keyed", key))
        return await self._read_entries(direction, sorted(members, key=int))

    async def dead_letters(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        return await self._entries(direction, "dead", limit)

    async def retry_later(self, entry: OutboxEntry, error: str) -> None:
        await self._retry_later(args=[self._prefix, entry.direction.value, entry.sequence, error])

    async def settle(self, entry: OutboxEntry, outcome: Outcome, error: str = "") -> None:
        await self._settle(args=[self._prefix, entry.direction.value, entry.sequence, outcome.value, error])

    async def apply_reverse(self, entry: OutboxEntry, value: Any) -> bool:
        mode = "delete" if value is None else "put"
        return await self._run_write(entry.key, entry.request_id, None, mode, value, settles=entry) != -2

    async def counts(self, direction: Direction) -> OutboxCounts:
        totals = {
            name.decode(): int(value)
            for name, value in (await self._redis.hgetall(self._outbox("counts"))).items()
        }
        pending = int(await self._redis.zcard(self._outbox(direction.value, "pending")))

        def total(outcome: str) -> int:
            return totals.get(f"{direction.value}:{outcome}", 0)

        return OutboxCounts(
            appended=total("appended"),
            pending=pending,
            applied=total(Outcome.APPLIED.value),
            dead_lettered=total(Outcome.DEAD_LETTERED.value),
            superseded=total(Outcome.SUPERSEDED.value),
        )
