"""Changing a Redis Cluster namespace's partition count online: the store's side of
`microstate migrate NAME --partitions P` (repartitioning.py runs it).

A key cannot move between partitions atomically (they are different slots, often different masters), so
each key moves by copy and compare-and-set, and the old partition stays the authority for every key it
has not yet handed over:

- **Begin.** The descriptor gets the next layout (redis_cluster_layout.py); the run waits `settle` (longer
  than LAYOUT_REFRESH), so every server reads and lists both layouts before any key moves; then the next
  layout's partitions are marked `arriving` and the current ones `moving`.
- **Move** (in key order, a batch at a time): copy the record, revision and expiry unchanged, into its new
  partition, unless a write there already owns the key; then, in the old partition, if the record still
  has that revision, forget it and add the key to the partition's `moved` set (one script). If a write
  came between, copy again; if the key was deleted, remove the copy.
- **Writes** (redis_cluster.py's `_FORWARD` guard): an old partition that is moving takes writes of the
  keys it still holds; for a key it does not hold it answers "moved" or "absent" and the write goes to the
  new partition. A new partition marks every key written there `owned` (until the switch has settled:
  a server still reading both layouts then counts what the others create), after "absent" first dropping
  any copy of the key it holds (a copy of a key deleted since). So at any moment each key has one
  authority: the old partition while it holds the key, else the new one, where a record counts if the key
  was moved or is owned (a copy of a key deleted before it was handed over does not count).
- **Reads** ask the old partition first and the new one only for keys the old one does not hold (in that
  order: a key is copied before it is handed over, so the second read finds it). **List** lists the old
  partitions, then the new ones, and keeps a new partition's record only if it is owned or moved.
- **Finish.** After the checking pass has found no key left in the old layout: copies of deleted keys are
  removed, the descriptor makes the next layout current (the old one `dropped`, with its logs' last
  revisions), the run waits `settle` again, then deletes the old partitions' logs, indexes and sets, and
  records that cursors below the old logs' last change can no longer resume. The old partitions' `meta`
  (still marked `moving`: a server that missed the switch gets its writes sent on) and audit journals
  (never trimmed; `audit_journal` keeps reading them) stay.

Revisions and etags do not change when a key moves; the next layout's revisions end in other suffixes, and
a write sent on from an old partition starts above that partition's clock, so per key revisions keep
increasing and watches keep one order. Nothing is logged for a move: a watch sees no change.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from functools import partial
from typing import Any

from microstate.server.store.base import Page, Record, StoreUnavailable
from microstate.server.store.redis import _LIST, _PROLOGUE, _record
from microstate.server.store.redis_cluster import (
    RedisClusterStore,
    _guard,
    _Partition,
    _revision,
    by_partition,
    layout_partitions,
)
from microstate.server.store.redis_cluster_layout import LayoutChanged, Layouts
from microstate.server.store.redis_cluster_nodes import Redirected

# KEYS[1]: a set; KEYS[2..]: records; ARGV: their keys. For each key, two replies: its record if live (else
# false) and whether the set holds the key.
_READ_MARKED = (
    _PROLOGUE
    + """
local out = {}
for i = 2, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if live(parse(raw)) then out[#out + 1] = raw else out[#out + 1] = false end
  out[#out + 1] = redis.call('SISMEMBER', KEYS[1], ARGV[i - 1])
end
return out
"""
)
_ROW = "out[#out + 1] = {member, raw}"
# _LIST with each row's third field whether KEYS[3] (the partition's owned set) holds the key.
_LIST_OWNED = _LIST.replace(_ROW, "out[#out + 1] = {member, raw, redis.call('SISMEMBER', KEYS[3], member)}")
assert _LIST_OWNED != _LIST
# KEYS: record, index, expiries, owned (of the new partition). ARGV: key, record string. 0 if owned.
_COPY = (
    _PROLOGUE
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 0 end
local h = parse(ARGV[2])
write(KEYS[1], h[1], h[2], h[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if h[2] == '' then redis.call('ZREM', KEYS[3], ARGV[1]) else redis.call('ZADD', KEYS[3], h[2], ARGV[1]) end
return 1
"""
)
# KEYS: record, index, expiries, moved (of the old partition). ARGV: key, revision copied. 1 handed over
# (now or before), 0 written since (copy again), 2 deleted or expired.
_HAND_OVER = (
    _PROLOGUE
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 1 end
local h = parse(redis.call('GET', KEYS[1]))
if not live(h) then return 2 end
if h[1] ~= ARGV[2] then return 0 end
forget(KEYS[2], KEYS[3], KEYS[1], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
"""
)
# KEYS: record, index, expiries, owned (of the new partition). ARGV: key. Drops a copy nobody owns.
_UNCOPY = (
    _PROLOGUE
    + """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 0 end
forget(KEYS[2], KEYS[3], KEYS[1], ARGV[1])
return 1
"""
)
# KEYS: the descriptor. ARGV: its expected value, the new one. 1 if set.
_SWAP = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
SCAN = 500
"""Keys per command when the finish scans a partition."""

Partitions = Sequence[_Partition]


async def _marked(
    store: RedisClusterStore, partitions: Partitions, keys: Sequence[str], owned: bool
) -> dict[str, tuple[bytes | None, bool]]:
    """For each key: its live record in its partition of `partitions` and whether the partition's owned
    (else moved) set holds it; one script per partition, in parallel, over the masters' fast path (through
    redis-py, with its retries, where that was redirected)."""

    async def one(number: int, members: list[str]) -> list[Any]:
        partition = partitions[number]
        marks = partition.owned if owned else partition.moved
        keys = [marks, *(partition.record_prefix + key for key in members)]
        script = store.script(_READ_MARKED)
        fast = store._masters.run_script(partition.slot, script.sha, _READ_MARKED, keys, members)
        try:
            return list(await _guard(fast))
        except (Redirected, StoreUnavailable):
            return list(await store._read(partial(script, keys=keys, args=members)))

    groups = by_partition(partitions, keys)
    replies = await asyncio.gather(*(one(number, members) for number, members in groups.items()))
    return {
        key: (reply[2 * i] or None, bool(reply[2 * i + 1]))
        for members, reply in zip(groups.values(), replies, strict=True)
        for i, key in enumerate(members)
    }


async def read_moving(
    store: RedisClusterStore, current: Partitions, upcoming: Partitions, keys: Sequence[str]
) -> dict[str, Record]:
    """BatchGet while a repartition runs: the old partitions first, then the new ones for the keys the old
    ones no longer hold (see the module docstring)."""
    old = await _marked(store, current, keys, owned=False)
    records = {key: _record(key, raw) for key, (raw, _) in old.items() if raw is not None}
    rest = [key for key in keys if key not in records]
    if rest:
        new = await _marked(store, upcoming, rest, owned=True)
        for key in rest:
            raw, owned = new[key]
            if raw is not None and (owned or old[key][1]):
                records[key] = _record(key, raw)
    if records:
        store._saw(max(record.revision for record in records.values()))
    return records


async def list_moving(
    store: RedisClusterStore,
    current: Partitions,
    upcoming: Partitions,
    prefix: str,
    after: str | None,
    limit: int,
) -> Page:
    """List while a repartition runs: the old partitions' records (each one they list they hold), then the
    new partitions' (read second: a key handed over in between is there), kept if owned or moved. Only
    keys up to the lowest last key of a partition whose answer came back full are complete."""
    old = await store._list_each(current, prefix, after, limit)
    new = await store._list_each(upcoming, prefix, after, limit, store.script(_LIST_OWNED))
    full = [rows[-1][0] for rows in (*old, *new) if len(rows) > limit]
    bound = min(full) if full else None
    found = {member: raw for rows in old for member, raw in rows}
    unowned = []
    for rows in new:
        for member, raw, owned in rows:
            if member in found:
                continue
            if owned:
                found[member] = raw
            else:
                unowned.append((member, raw))
    if unowned:
        moved = await _moved(store, current, [member.decode() for member, _ in unowned])
        found.update((member, raw) for member, raw in unowned if member.decode() in moved)
    members = sorted(member for member in found if bound is None or member <= bound)
    records = [_record(member.decode(), found[member]) for member in members[:limit]]
    if len(members) > limit:
        return Page(records, records[-1].key)
    return Page(records, None if bound is None else bound.decode())


async def _moved(store: RedisClusterStore, partitions: Partitions, keys: Sequence[str]) -> set[str]:
    """Which of `keys` their old partitions have handed over."""

    async def one(number: int, members: list[str]) -> set[str]:
        moved = partitions[number].moved
        flags = await store._read(lambda: store._client.execute_command("SMISMEMBER", moved, *members))
        return {key for key, flag in zip(members, flags, strict=True) if flag}

    groups = by_partition(partitions, keys)
    found = await asyncio.gather(*(one(number, members) for number, members in groups.items()))
    return set().union(*found)


# --- the run's side ------------------------------------------------------------------------------------


async def layouts(store: RedisClusterStore) -> Layouts:
    return await store._refresh_layouts()  # on first use, it records P for a new namespace too


async def swap_layouts(store: RedisClusterStore, seen: Layouts, new: Layouts) -> None:
    """Store `new` if the descriptor still holds `seen`; LayoutChanged if another run changed it."""
    script = store.script(_SWAP)
    done = await store._read(lambda: script(keys=[store._descriptor], args=[seen.encode(), new.encode()]))
    if not done:
        raise LayoutChanged("the partition layout changed under this run: another run is under way")
    store._adopt(new)


async def begin(store: RedisClusterStore, partitions: int) -> Layouts:
    """Record the next layout (ValueError if it cannot be: see Layouts.starting)."""
    seen = await layouts(store)
    started = seen.starting(partitions)
    await swap_layouts(store, seen, started)
    return started


async def arm(store: RedisClusterStore) -> None:
    """Mark the next layout's partitions arriving, then the current ones moving (idempotent)."""
    await layouts(store)
    assert store._arriving is not None
    for partitions, flag in ((store._arriving, "arriving"), (store._partitions, "moving")):
        for partition in partitions:
            await store._read(partial(store._client.hset, partition.meta, flag, "1"))


async def move_batch(store: RedisClusterStore, after: str | None, limit: int) -> tuple[int, int, str | None]:
    """Move up to `limit` keys after `after` (in key order) that the old layout still holds to the next
    one: (examined, moved, where the next batch starts or None)."""
    await layouts(store)
    current, upcoming = store._partitions, store._arriving
    assert upcoming is not None
    rows = await store._list_each(current, "", after, limit)
    merged = list(heapq.merge(*rows, key=lambda row: row[0]))[: limit + 1]
    batch = merged[:limit]
    keys = [member.decode() for member, _ in batch]
    moved = await asyncio.gather(
        *(
            _move(store, store._partition(current, key), store._partition(upcoming, key), key, raw)
            for key, (_, raw) in zip(keys, batch, strict=True)
        )
    )
    next_after = batch[-1][0].decode() if len(merged) > limit else None
    return len(batch), sum(moved), next_after


async def _move(store: RedisClusterStore, old: _Partition, new: _Partition, key: str, raw: bytes) -> bool:
    copy = store.script(_COPY)
    hand_over = store.script(_HAND_OVER)
    uncopy = store.script(_UNCOPY)
    arrived = [new.record_prefix + key, new.index, new.expiries, new.owned]
    leaving = [old.record_prefix + key, old.index, old.expiries, old.moved]
    while True:
        if not await store._read(partial(copy, keys=arrived, args=[key, raw])):
            return False  # written in its new partition already: nothing to move
        revision = raw.split(b":", 1)[0]
        verdict = await store._read(partial(hand_over, keys=leaving, args=[key, revision]))
        if verdict == 1:
            return True
        if verdict == 2:
            await store._read(lambda: uncopy(keys=arrived, args=[key]))
            return False
        fresh: bytes | None = await store._read(partial(store._client.get, leaving[0]))  # type: ignore[arg-type]
        if fresh is None:
            await store._read(lambda: uncopy(keys=arrived, args=[key]))
            return False
        raw = fresh  # written meanwhile: copy what is there now


async def finish(store: RedisClusterStore, settle: float) -> None:
    """Make the next layout current and delete what the old one leaves behind (idempotent: a run that
    died during the finish finishes it)."""
    seen = await layouts(store)
    if seen.next is not None:
        await _drop_stale_copies(store)
        old = store._partitions

        async def heads() -> list[Any]:
            pipeline = store._client.pipeline()
            for partition in old:
                pipeline.xrevrange(partition.log, "+", "-", count=1)
            return list(await pipeline.execute())

        last = tuple(_revision(e[0][0]) if e else 0 for e in await store._read(heads))
        await swap_layouts(store, seen, seen.switched(last))
        await asyncio.sleep(settle)  # servers stop reading and listing the old layout
        seen = await layouts(store)
    if seen.dropped is not None:
        for partition in store._partitions:  # every server writes here now: owned marks are not needed
            await store._read(partial(store._client.hdel, partition.meta, "arriving"))
        dropped = layout_partitions(store.namespace, seen.dropped)
        doomed = [key for p in dropped for key in (p.log, p.index, p.expiries, p.moved, p.owned)]
        doomed += [p.owned for p in store._partitions]
        for key in doomed:
            await store._read(partial(store._client.delete, key))
        await swap_layouts(store, seen, seen.cleaned())


async def _drop_stale_copies(store: RedisClusterStore) -> None:
    """Remove from the new partitions every copy whose key was deleted before it was handed over (neither
    owned nor moved): until the switch nothing reads them, after it they would count."""
    uncopy = store.script(_UNCOPY)
    for partition in store._arriving or []:
        start = "-"
        while True:
            scan = partial(store._client.zrangebylex, partition.index, start, "+", 0, SCAN)
            members: list[bytes] = await store._read(scan)  # type: ignore[arg-type]
            if not members:
                break
            keys = [member.decode() for member in members]
            owned = await store._read(
                partial(store._client.execute_command, "SMISMEMBER", partition.owned, *keys)
            )
            unowned = [key for key, flag in zip(keys, owned, strict=True) if not flag]
            moved = await _moved(store, store._partitions, unowned) if unowned else set()
            for key in unowned:
                if key not in moved:
                    arrived = [
                        partition.record_prefix + key,
                        partition.index,
                        partition.expiries,
                        partition.owned,
                    ]
                    await store._read(partial(uncopy, keys=arrived, args=[key]))
            start = "(" + keys[-1]


# --- the run's state --------------------------------------------------------------------------------------

# KEYS: the run's state key. ARGV: the token expected ('' for none), the state to store with the next token.
_SAVE_RUN = """
local current = redis.call('HGET', KEYS[1], 'token') or ''
if current ~= ARGV[1] then return false end
local token = (tonumber(current) or 0) + 1
redis.call('HSET', KEYS[1], 'token', token, 'state', ARGV[2])
return token
"""


def _run_key(store: RedisClusterStore) -> str:
    return f"msc:{{{store.namespace}}}:repartition"


async def read_run(store: RedisClusterStore) -> tuple[bytes | None, int | None]:
    """The repartition run's state as saved, and its token (None, None: no run ever saved one)."""
    replies: list[Any] = await store._read(partial(store._client.hmget, _run_key(store), ["token", "state"]))
    token, state = replies
    return state, None if token is None else int(token)


async def save_run(store: RedisClusterStore, state: bytes, token: int | None) -> int | None:
    """Save the run's state if it is still at `token`: the new token, or None if another run saved since."""
    script = store.script(_SAVE_RUN)
    expected = "" if token is None else str(token)
    saved = await store._read(partial(script, keys=[_run_key(store)], args=[expected, state]))
    return None if saved is None else int(saved)
