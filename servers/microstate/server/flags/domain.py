"""The flags microstate's behaviour: flags written after validation, evaluated from the rule set in memory,
and streamed to replicas as a snapshot then deltas.

Writes go to the store through the kit's keyed resources (etags, update masks, create-if-absent); each
answer waits (boundedly) until this process's rule set has applied the write, so a caller evaluates what it
just wrote. Evaluations read the rule set (ruleset.py) and the shared evaluator, compiled once per flag
revision, and never touch the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from microstate.client.flags.evaluation import CompiledFlag, Resolution, evaluate, flag_not_found, struct_dict
from microstate.flags.v1 import flags_pb2 as pb
from microstate.server.config import MAX_RESPONSE_BYTES
from microstate.server.errors import InvalidArgument
from microstate.server.flags import rules
from microstate.server.flags.impact import impact
from microstate.server.flags.model import FLAG, read_form, stored_form, with_output
from microstate.server.flags.ruleset import RuleSet, StartOver, Subscription, changes_between
from microstate.server.kit.paging import PageTokens
from microstate.server.kit.resources import UNCHANGED, Resources, Stored, Unchanged
from microstate.server.responses import ResponseTooLarge
from microstate.server.store.base import Store, revision_of
from microstate.server.wellknown import duration, timestamp

LIST_TOKENS: Final = PageTokens("ListFlags", "page_token")
CHUNK_BYTES: Final = 1024 * 1024 - 1024
"""A snapshot chunk holds flags up to about this many bytes (a single flag is at most 1 MiB)."""
HEARTBEAT_INTERVAL: Final = 5.0
WRITE_VISIBLE_WITHIN: Final = 5.0
"""Seconds a write's answer waits for the rule set of its process to apply it (read your writes)."""
AHEAD_WAIT: Final = 2.0
"""Seconds SyncFlags waits for a since_revision ahead of this process's rule set (written through another
server process) before it answers with a snapshot instead."""
MIN_CATCH_UP: Final = 1_000
"""A resume is sent as deltas when it needs at most max(this, number of flags) of them; else a snapshot."""


def new_flag(flag: pb.Flag, now: Timestamp) -> pb.Flag:
    """What a new flag stores: `flag` without its revision fields, ENABLED unless it says otherwise,
    checked (InvalidArgument), created and updated `now`."""
    new = stored_form(flag)
    if new.state == pb.FLAG_STATE_UNSPECIFIED:
        new.state = pb.FLAG_STATE_ENABLED
    rules.check_flag(new)
    new.create_time.CopyFrom(now)
    new.update_time.CopyFrom(now)
    return new


class FlagsDomain:
    """Flags in one store, the rule set this process follows, and its sync streams."""

    def __init__(
        self,
        store: Store,
        *,
        stopping: asyncio.Event | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._flags = Resources(store, FLAG, LIST_TOKENS)
        self.ruleset = RuleSet(store, stopping=stopping)
        self._heartbeat_interval = heartbeat_interval
        self._clock = clock

    # -- reads and writes ------------------------------------------------------------------------------

    async def get(self, key: str) -> pb.Flag:
        rules.check_key(key)
        return with_output(await self._flags.get(key))

    async def page(self, page_size: int, page_token: str) -> tuple[list[pb.Flag], str]:
        used = 0

        def take(stored: Stored[pb.Flag]) -> bool:
            nonlocal used
            used += stored.data.ByteSize() + 64
            return used <= MAX_RESPONSE_BYTES

        page, token = await self._flags.list("", rules.page_size_of(page_size), page_token, take)
        return [with_output(stored) for stored in page], token

    async def create(self, flag: pb.Flag, *, validate_only: bool) -> pb.Flag:
        new = new_flag(flag, timestamp(self._clock()))
        if validate_only:
            if await self._store.get(new.key) is not None:  # as the create would find (AIP-163)
                raise FLAG.already_exists(new.key)
            return new
        stored = await self._flags.create(new.key, new)
        await self.ruleset.wait_for(stored.revision, WRITE_VISIBLE_WITHIN)
        return with_output(stored)

    async def update(
        self, flag: pb.Flag, paths: list[str], *, validate_only: bool
    ) -> tuple[pb.Flag, pb.Impact]:
        rules.check_key(flag.key, "flag.key")
        masked = rules.masked_paths(paths)
        report = pb.Impact()

        def change(current: Stored[pb.Flag]) -> pb.Flag | Unchanged:
            updated = _merged(current.data, flag, masked)
            rules.check_flag(updated)
            report.CopyFrom(impact(current.data, updated))
            if updated == current.data:
                return UNCHANGED
            updated.update_time.CopyFrom(timestamp(self._clock()))
            return updated

        if validate_only:
            current = await self._flags.get_for_write(flag.key, flag.etag)
            result = change(current)
            return read_form(current.data if result is UNCHANGED else result, current.revision), report
        stored = await self._flags.update(flag.key, change, etag=flag.etag)
        await self.ruleset.wait_for(stored.revision, WRITE_VISIBLE_WITHIN)
        return with_output(stored), report

    async def delete(self, key: str, etag: str) -> int:
        """Deletes a flag; the rule set revision at which it is gone (the delete's, or a later one when
        other writes commit in between: the revision a replica must reach to have applied it)."""
        rules.check_key(key)
        await self._flags.delete(key, etag=etag)
        revision = revision_of(await self._store.head_cursor())
        await self.ruleset.wait_for(revision, WRITE_VISIBLE_WITHIN)
        return revision

    # -- evaluation ------------------------------------------------------------------------------------

    async def evaluate(self, key: str, context: pb.EvaluationContext, expected_type: int) -> pb.Evaluation:
        rules.check_key(key)
        rules.check_context(context)
        await self.ruleset.ready()
        attributes = _attributes(context)
        ruleset = self.ruleset
        compiled = ruleset.compiled(key)
        if compiled is None:
            return _evaluation(key, flag_not_found(key, ruleset.revision), None)
        result = evaluate(compiled, context.targeting_key, attributes, ruleset.revision, expected_type)
        return _evaluation(key, result, compiled)

    async def evaluate_all(self, context: pb.EvaluationContext) -> pb.EvaluateAllResponse:
        rules.check_context(context)
        await self.ruleset.ready()
        attributes = _attributes(context)
        ruleset = self.ruleset
        revision = ruleset.revision  # no await below: every flag is read at this revision
        response = pb.EvaluateAllResponse(revision=revision)
        for key in ruleset.sorted_keys():
            compiled = ruleset.compiled(key)
            assert compiled is not None
            result = evaluate(compiled, context.targeting_key, attributes, revision)
            response.evaluations.append(_evaluation(key, result, compiled))
        if (size := response.ByteSize()) > MAX_RESPONSE_BYTES:  # many large object variants
            raise ResponseTooLarge(f"the evaluations of {len(response.evaluations):,} flags", size)
        return response

    # -- sync ------------------------------------------------------------------------------------------

    async def sync(self, since: int) -> AsyncGenerator[pb.SyncFlagsResponse, None]:
        """A snapshot (or, resuming, the deltas after `since`), then every delta, with heartbeats."""
        if since < 0:
            raise InvalidArgument("since_revision", "must not be negative")
        await self.ruleset.ready()
        if since > self.ruleset.revision:
            await self.ruleset.wait_for(since, AHEAD_WAIT)
        while True:
            subscription = self.ruleset.subscribe()
            try:
                for message in await self._start(subscription, since):
                    yield message
                async for message in self._follow(subscription):
                    yield message
            except StartOver:
                since = 0
            finally:
                subscription.close()

    async def _start(self, subscription: Subscription, since: int) -> Iterable[pb.SyncFlagsResponse]:
        """What brings a replica at `since` to the subscription's revision: deltas if the feed still holds
        them and they are fewer than the flags, else a snapshot."""
        revision = subscription.revision
        if 0 < since <= revision:
            limit = max(MIN_CATCH_UP, len(subscription.flags))
            deltas = await changes_between(self._store, since, revision, limit=limit)
            if deltas is not None:
                return deltas
        return snapshot_chunks(subscription.flags, revision)

    async def _follow(self, subscription: Subscription) -> AsyncGenerator[pb.SyncFlagsResponse, None]:
        held = subscription.revision
        while True:
            try:
                async with asyncio.timeout(self._heartbeat_interval):
                    message = await subscription.next()
            except TimeoutError:
                yield self._heartbeat(held)
                continue
            held = message.delta.revision
            yield message

    def _heartbeat(self, revision: int) -> pb.SyncFlagsResponse:
        interval = duration(int(self._heartbeat_interval * 1e9))
        beat = pb.Heartbeat(
            revision=revision, server_time=timestamp(self._clock()), heartbeat_interval=interval
        )
        return pb.SyncFlagsResponse(heartbeat=beat)


def snapshot_chunks(flags: list[pb.Flag], revision: int) -> Iterator[pb.SyncFlagsResponse]:
    """The snapshot of `flags` at `revision` in chunks of at most about CHUNK_BYTES, the last marked."""
    chunk = pb.SnapshotChunk(revision=revision)
    used = 0
    for flag in flags:
        size = flag.ByteSize() + 8  # its tag and length
        if chunk.flags and used + size > CHUNK_BYTES:
            yield pb.SyncFlagsResponse(snapshot=chunk)
            chunk = pb.SnapshotChunk(revision=revision)
            used = 0
        chunk.flags.append(flag)
        used += size
    chunk.last = True
    yield pb.SyncFlagsResponse(snapshot=chunk)


def _merged(current: pb.Flag, request: pb.Flag, paths: tuple[str, ...]) -> pb.Flag:
    """`current` with the masked fields taken from `request`."""
    updated = pb.Flag()
    updated.CopyFrom(current)
    for path in paths:
        if path in ("variants", "rules", "metadata"):
            updated.ClearField(path)
            getattr(updated, path).MergeFrom(getattr(request, path))
        else:
            setattr(updated, path, getattr(request, path))
    if updated.state == pb.FLAG_STATE_UNSPECIFIED:
        updated.state = pb.FLAG_STATE_ENABLED
    return updated


def _attributes(context: pb.EvaluationContext) -> dict[str, Any]:
    return struct_dict(context.attributes) if context.attributes.fields else {}


def _evaluation(key: str, result: Resolution, compiled: CompiledFlag | None) -> pb.Evaluation:
    evaluation = pb.Evaluation(
        flag_key=key,
        variant=result.variant,
        reason=result.reason,  # type: ignore[arg-type]
        error_code=result.error_code,  # type: ignore[arg-type]
        error_message=result.error_message,
        revision=result.revision,
    )
    if compiled is not None:
        if result.variant:
            evaluation.value.CopyFrom(compiled.variants[result.variant].proto)
        evaluation.flag_metadata.update(compiled.metadata)
    return evaluation
