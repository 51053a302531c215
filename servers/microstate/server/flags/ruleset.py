"""The rule set held in memory, following the store's change feed: what evaluations and SyncFlags read.

One `RuleSet` per server process keeps every flag at one rule set revision (the store revision of the last
change applied), so EvaluateAll answers at one revision and a SyncFlags snapshot is consistent without
reading the store per stream. It starts on first use:

1. bootstrap: H1 = head; list every flag; H2 = head. Then watch the change feed after H1, applying a change
   to a key only when it is newer than what the listing gave for that key. The listing read each key at
   some moment no later than H2, so once the changes through H2 are applied every key is as it was at H2:
   the rule set is consistent from then on, and only then is it published;
2. follow: each change is one revision: applied, then handed to every subscriber as one Delta.

A subscription is taken in one step of the event loop (the flags, their revision and the queue of later
deltas together), so nothing is lost or sent twice between a snapshot and the deltas after it. If the feed
is trimmed past the follower (CursorExpired) it bootstraps again and every subscriber is told to start over
with a fresh snapshot; while the store is unreachable the rule set keeps serving what it holds, and
resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from microstate.client.flags.evaluation import CompiledFlag, compile_flag
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server.flags.model import FLAG, read_form
from microstate.server.store.base import (
    Change,
    CursorExpired,
    InvalidCursor,
    Store,
    StoreUnavailable,
    cursor_of,
    revision_of,
)

log = logging.getLogger(__name__)

RETRY_DELAY: Final = 0.5
"""Seconds between attempts to reach the store while bootstrapping or after the feed failed."""
MAX_QUEUED: Final = 10_000
"""Deltas a subscriber may fall behind by before it is told to start over with a snapshot."""
LIST_PAGE: Final = 1_000


class StartOver(Exception):
    """A subscriber fell behind, or the rule set bootstrapped again: it needs a fresh snapshot."""


class Subscription:
    """The deltas after a snapshot, in revision order, each a ready SyncFlagsResponse."""

    def __init__(self, owner: RuleSet, flags: list[pb.Flag], revision: int) -> None:
        self._owner = owner
        #: Every flag at `revision`, in key order.
        self.flags = flags
        self.revision = revision
        self._queue: asyncio.Queue[pb.SyncFlagsResponse | None] = asyncio.Queue()

    def put(self, message: pb.SyncFlagsResponse) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self.start_over()
            return
        self._queue.put_nowait(message)

    def start_over(self) -> None:
        self._owner.unsubscribe(self)
        self._queue.put_nowait(None)

    async def next(self) -> pb.SyncFlagsResponse:
        """The next delta; raises StartOver when the subscriber must start again from a snapshot."""
        message = await self._queue.get()
        if message is None:
            raise StartOver
        return message

    def close(self) -> None:
        self._owner.unsubscribe(self)


class RuleSet:
    """Every flag of one store at one revision, kept current from the store's change feed."""

    def __init__(
        self, store: Store, *, stopping: asyncio.Event | None = None, retry_delay: float = RETRY_DELAY
    ):
        self._store = store
        self._stopping = stopping
        self._retry_delay = retry_delay
        self._flags: dict[str, pb.Flag] = {}
        self._compiled: dict[str, CompiledFlag] = {}
        self.revision = 0
        self._ready = False
        self._error: Exception | None = None
        self._advanced = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    # -- reading ---------------------------------------------------------------------------------------

    async def ready(self) -> None:
        """Return once the rule set is published (starting it on first use); StoreUnavailable while it
        cannot bootstrap."""
        self._start()
        while not self._ready:
            if self._error is not None:
                raise StoreUnavailable(f"the rule set cannot be read: {self._error}")
            await self._wait_advanced()

    def get(self, key: str) -> pb.Flag | None:
        return self._flags.get(key)

    def compiled(self, key: str) -> CompiledFlag | None:
        """The flag ready to evaluate, compiled once per revision of it."""
        flag = self._flags.get(key)
        if flag is None:
            return None
        compiled = self._compiled.get(key)
        if compiled is None or compiled.revision != flag.revision:
            compiled = self._compiled[key] = compile_flag(flag)
        return compiled

    def sorted_keys(self) -> list[str]:
        return sorted(self._flags)

    async def wait_for(self, revision: int, within: float) -> bool:
        """Wait until the rule set has applied `revision` (or `within` seconds passed); whether it has.
        Does not start the rule set: a process that never evaluates need not follow the feed."""
        if self._task is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not (self._ready and self.revision >= revision):
                    await self._wait_advanced()
        return self._ready and self.revision >= revision

    def subscribe(self) -> Subscription:
        """The flags, their revision and every later delta; call after `ready()`, with no await between."""
        subscription = Subscription(self, [self._flags[k] for k in sorted(self._flags)], self.revision)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- following ---------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flags rule set")

    async def _wait_advanced(self) -> None:
        await self._advanced.wait()

    def _notify(self) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def _run(self) -> None:
        follow = asyncio.ensure_future(self._follow())
        waits: set[asyncio.Future[Any]] = {follow}
        if self._stopping is not None:
            waits.add(asyncio.ensure_future(self._stopping.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _follow(self) -> None:
        cursor: str | None = None  # None: bootstrap
        while True:
            try:
                if cursor is None:
                    cursor = await self._bootstrap()
                async for change in self._store.watch("", after=cursor):
                    self._apply(change)
                    cursor = change.cursor
            except (CursorExpired, InvalidCursor) as exc:
                log.warning("the flags change feed moved past the rule set; reading it again: %s", exc)
                cursor = None
            except StoreUnavailable as exc:
                self._error = exc
                self._notify()
                await asyncio.sleep(self._retry_delay)
            except Exception as exc:  # a record it cannot read, say: never stop following for good
                log.exception("the flags rule set failed; reading it again")
                self._error = exc
                self._notify()
                cursor = None
                await asyncio.sleep(self._retry_delay)

    async def _bootstrap(self) -> str:
        """Read every flag and publish the rule set consistent at a revision; the cursor to follow from."""
        start = await self._store.head_cursor()
        listed: dict[str, pb.Flag] = {}
        after: str | None = None
        while True:
            page = await self._store.list("", after=after, limit=LIST_PAGE)
            for record in page.records:
                listed[record.key] = read_form(FLAG.from_bytes(record.value), record.revision)
            if page.next_after is None:
                break
            after = page.next_after
        consistent_at = revision_of(await self._store.head_cursor())
        cursor = start
        if revision_of(start) < consistent_at:
            async for change in self._store.watch("", after=start):
                _apply_if_newer(listed, change)
                cursor = change.cursor
                if revision_of(cursor) >= consistent_at:
                    break
        self._publish(listed, revision_of(cursor))
        return cursor

    def _publish(self, flags: dict[str, pb.Flag], revision: int) -> None:
        self._flags = flags
        self._compiled = {}
        self.revision = revision
        self._ready = True
        self._error = None
        for subscription in list(self._subscribers):
            subscription.start_over()
        self._notify()

    def _apply(self, change: Change) -> None:
        revision = revision_of(change.cursor)
        delta = pb.Delta(revision=revision)
        if change.record is None:
            self._flags.pop(change.key, None)
            self._compiled.pop(change.key, None)
            delta.deletes.append(change.key)
        else:
            flag = read_form(FLAG.from_bytes(change.record.value), change.record.revision)
            self._flags[change.key] = flag
            delta.upserts.append(flag)
        self.revision = revision
        self._error = None
        message = pb.SyncFlagsResponse(delta=delta)
        for subscription in list(self._subscribers):
            subscription.put(message)
        self._notify()


def _apply_if_newer(flags: dict[str, pb.Flag], change: Change) -> None:
    """Apply a change replayed over a listing, unless the listing already read the key at a later revision."""
    revision = revision_of(change.cursor)
    current = flags.get(change.key)
    if current is not None and current.revision >= revision:
        return
    if change.record is None:
        flags.pop(change.key, None)
    else:
        flags[change.key] = read_form(FLAG.from_bytes(change.record.value), change.record.revision)


async def changes_between(
    store: Store, after: int, through: int, *, limit: int | None = None
) -> list[pb.SyncFlagsResponse] | None:
    """The deltas of the revisions after `after` through `through`, read from the store's change feed;
    None when the feed no longer holds them (trimmed, or `after` is not a revision of this store), or holds
    more than `limit` of them. Counted, not computed from the revisions: a store's revisions increase but
    need not be consecutive (the Redis Cluster store's are clock readings)."""
    deltas: list[pb.SyncFlagsResponse] = []
    if after >= through:
        return deltas
    try:
        async for change in store.watch("", after=cursor_of(after)):
            revision = revision_of(change.cursor)
            delta = pb.Delta(revision=revision)
            if change.record is None:
                delta.deletes.append(change.key)
            else:
                delta.upserts.append(read_form(FLAG.from_bytes(change.record.value), change.record.revision))
            deltas.append(pb.SyncFlagsResponse(delta=delta))
            if limit is not None and len(deltas) > limit:
                return None
            if revision >= through:
                return deltas
    except (CursorExpired, InvalidCursor):
        return None
    return None
