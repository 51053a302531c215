"""Model-registry rules over two stores: records (models, versions, aliases, uploads; model.py) and blobs.

Commit order of an upload: the blob store verifies size and digest and publishes the blob (blobs/base.py),
then the version record is written with if-absent: that one write makes the version visible, and until it
happens no version names the blob. Numbers are gapless because version n+1 is written only after n exists
(the model's latest_version is a hint that is repaired when it lags). A stream cut before its end leaves
its bytes in the blob store's upload, out of sight, to be continued (QueryUpload) or collected. A blob
published whose version then failed to commit is named by nothing: a retry of the upload claims and names
it, else `sweep` removes it after the upload TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from microstate.server.errors import EtagMismatch, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from microstate.server.kit import limits
from microstate.server.kit.locks import KeyedLocks
from microstate.server.kit.paging import PageTokens
from microstate.server.kit.resources import UNCHANGED, Resources, Stored, Unchanged, changes, etag_of
from microstate.server.models import rules
from microstate.server.models.model import (
    ALIAS,
    ALIAS_PREFIX,
    MODEL,
    MODEL_PREFIX,
    UPLOAD,
    VERSION,
    VERSION_PREFIX,
    AliasData,
    AliasMove,
    ModelData,
    UploadData,
    VersionData,
    alias_key,
    aliases_prefix,
    model_key,
    split_key,
    upload_key,
    version_key,
    versions_prefix,
)
from microstate.server.store.base import ABSENT, ChangeKind, PreconditionFailed, Store
from microstate.server.store.blobs.base import (
    BlobStore,
    DigestMismatch,
    OffsetMismatch,
    SizeMismatch,
    UploadNotFound,
)
from microstate.server.store.blobs.base import OutOfRange as BlobOutOfRange
from microstate.server.streams import gathered

log = logging.getLogger(__name__)

GATHERED_CHUNKS: Final = 4
"""Upload chunks appended in one blob-store call at most: those that arrived while it wrote the last ones."""
UPLOAD_TTL: Final = 24 * 3600.0
"""Seconds an upload nobody continues is kept (its bytes and its record)."""
COLLECT_INTERVAL: Final = 600.0
"""Seconds between two looks for abandoned uploads and orphan blobs (see `collect_until`)."""
SWEEP_PAGE: Final = 500
"""Version records read per page when a sweep gathers the digests versions name."""
CHECKPOINT_EVERY: Final = 256
"""A watch reports its position after this many changes it had nothing to say about."""


@dataclass(frozen=True, slots=True)
class Uploaded:
    version: Stored[VersionData]
    bytes_received: int
    deduplicated: bool


@dataclass(frozen=True, slots=True)
class UploadState:
    committed_offset: int
    version: Stored[VersionData] | None
    """The version the upload made, once done."""
    under_way: bool
    digest_present: bool


@dataclass(frozen=True, slots=True)
class Opened:
    """A blob read about to start: what it pinned, and its bytes."""

    digest: str
    size: int
    version: Stored[VersionData] | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    """"version", "alias", "alias_deleted" or "checkpoint"."""
    resume_token: str
    commit_time: float
    version: Stored[VersionData] | None = None
    alias: Stored[AliasData] | None = None
    model_id: str = ""
    alias_name: str = ""


def _version_not_found(model_id: str, version: int) -> NotFound:
    return NotFound(
        f"model {model_id!r} has no version {version}",
        reason="VERSION_NOT_FOUND",
        metadata={"model_id": model_id, "version": str(version)},
    )


def _alias_not_found(model_id: str, alias: str) -> NotFound:
    return NotFound(
        f"model {model_id!r} has no alias {alias!r}",
        reason="ALIAS_NOT_FOUND",
        metadata={"model_id": model_id, "alias": alias},
    )


def _model_not_found(model_id: str) -> NotFound:
    return NotFound(
        f"model {model_id!r} does not exist", reason="MODEL_NOT_FOUND", metadata={"model_id": model_id}
    )


class ModelsDomain:
    """The registry's operations; values in, stored values out (the servicer maps messages)."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        *,
        clock: Callable[[], int] = time.time_ns,
        upload_ttl: float = UPLOAD_TTL,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._upload_ttl = upload_ttl
        self.models = Resources(store, MODEL, PageTokens("ListModels", "page_token"))
        self.versions = Resources(store, VERSION, PageTokens("ListVersions", "model_id"))
        self.aliases = Resources(store, ALIAS, PageTokens("ListAliases", "model_id"))
        self.uploads = Resources(store, UPLOAD, PageTokens("-", "-"))
        self._model_locks = KeyedLocks()

    # -- models --------------------------------------------------------------------------------------------

    async def create_model(
        self, model_id: str, description: str, labels: Mapping[str, str]
    ) -> Stored[ModelData]:
        self._check_model(model_id, description, labels)
        now = self._clock()
        data = ModelData(model_id, description, dict(labels), 0, now, now)
        return await self.models.create(model_key(model_id), data)

    async def get_model(self, model_id: str) -> Stored[ModelData]:
        rules.check_model_id(model_id)
        return await self._model(model_id)

    async def _model(self, model_id: str) -> Stored[ModelData]:
        record = await self._store.get(model_key(model_id))
        if record is None:
            raise _model_not_found(model_id)
        return self.models.decode(record)

    async def update_model(
        self, model_id: str, description: str, labels: Mapping[str, str], etag: str
    ) -> Stored[ModelData]:
        self._check_model(model_id, description, labels)
        _check_etag(await self._model(model_id), etag, f"models/{model_id}")  # clear NOT_FOUND / ABORTED
        now = self._clock()
        return await self.models.update(
            model_key(model_id),
            lambda current: replace(
                current.data, description=description, labels=dict(labels), update_time_ns=now
            ),
            etag=etag,
        )

    async def list_models(self, page_size: int, page_token: str) -> tuple[list[Stored[ModelData]], str]:
        size = limits.page_size_of(page_size, default=rules.DEFAULT_PAGE_SIZE, maximum=rules.MAX_PAGE_SIZE)
        return await self.models.list(MODEL_PREFIX, size, page_token)

    @staticmethod
    def _check_model(model_id: str, description: str, labels: Mapping[str, str]) -> None:
        rules.check_model_id(model_id)
        rules.check_text(description, rules.MAX_DESCRIPTION, "description")
        rules.LABELS.check(labels, "labels")

    # -- versions and refs ---------------------------------------------------------------------------------

    async def get_version(self, model_id: str, version: int) -> Stored[VersionData]:
        rules.check_model_id(model_id)
        rules.check_version(version)
        return await self._version(model_id, version)

    async def _version(self, model_id: str, version: int) -> Stored[VersionData]:
        record = await self._store.get(version_key(model_id, version))
        if record is None:
            raise _version_not_found(model_id, version)
        return self.versions.decode(record)

    async def list_versions(
        self, model_id: str, page_size: int, page_token: str
    ) -> tuple[list[Stored[VersionData]], str]:
        rules.check_model_id(model_id)
        size = limits.page_size_of(page_size, default=rules.DEFAULT_PAGE_SIZE, maximum=rules.MAX_PAGE_SIZE)
        if not page_token:
            await self._model(model_id)
        return await self.versions.list(versions_prefix(model_id), size, page_token)

    async def resolve(self, ref: str, field: str = "ref") -> Stored[VersionData]:
        parsed = rules.parse_ref(ref, field)
        if parsed.digest:
            raise InvalidArgument(
                field, "name a version: <model>/<n> or <model>@<alias>", reason="INVALID_REF"
            )
        if parsed.alias:
            alias = await self._alias(parsed.model_id, parsed.alias)
            return await self._version(parsed.model_id, alias.data.version)
        return await self._version(parsed.model_id, parsed.version)

    # -- aliases -------------------------------------------------------------------------------------------

    async def _alias(self, model_id: str, alias: str) -> Stored[AliasData]:
        record = await self._store.get(alias_key(model_id, alias))
        if record is None:
            raise _alias_not_found(model_id, alias)
        return self.aliases.decode(record)

    async def get_alias(self, model_id: str, alias: str) -> Stored[AliasData]:
        rules.check_model_id(model_id)
        rules.check_alias(alias)
        return await self._alias(model_id, alias)

    async def set_alias(self, model_id: str, alias: str, version: int, etag: str) -> Stored[AliasData]:
        """Point `alias` at `version`: with an etag only if the alias is unchanged ("absent": only if it
        does not exist); every move appended to its history (the last MAX_HISTORY kept)."""
        rules.check_model_id(model_id)
        rules.check_alias(alias)
        rules.check_version(version)
        await self._version(model_id, version)
        key = alias_key(model_id, alias)
        now = self._clock()

        def move(current: Stored[AliasData] | None) -> AliasData | Unchanged:
            before = 0 if current is None else current.data.version
            if before == version:
                return UNCHANGED
            history = () if current is None else current.data.history
            history = (*history, AliasMove(before, version, now))[-rules.MAX_HISTORY :]
            return AliasData(model_id, alias, version, now, history)

        if etag == rules.ABSENT_ETAG:
            data = move(None)
            assert not isinstance(data, Unchanged)
            try:
                record = await self._store.put(key, ALIAS.to_bytes(data), if_match=ABSENT)
            except PreconditionFailed as failed:
                current = etag_of(failed.current.revision) if failed.current else ""
                raise EtagMismatch(_alias_subject(model_id, alias), etag, current) from None
            return Stored(data, record.revision)
        if etag:
            _check_etag(await self._alias(model_id, alias), etag, _alias_subject(model_id, alias))
            return await self.aliases.update(key, move, etag=etag)
        moved = await self.aliases.upsert(key, move)
        assert moved is not None
        return moved

    async def delete_alias(self, model_id: str, alias: str, etag: str) -> None:
        rules.check_model_id(model_id)
        rules.check_alias(alias)
        _check_etag(await self._alias(model_id, alias), etag, _alias_subject(model_id, alias))
        await self.aliases.delete(alias_key(model_id, alias), etag=etag)

    async def list_aliases(
        self, model_id: str, page_size: int, page_token: str
    ) -> tuple[list[Stored[AliasData]], str]:
        rules.check_model_id(model_id)
        size = limits.page_size_of(page_size, default=rules.DEFAULT_PAGE_SIZE, maximum=rules.MAX_PAGE_SIZE)
        if not page_token:
            await self._model(model_id)
        return await self.aliases.list(aliases_prefix(model_id), size, page_token)

    # -- uploads -------------------------------------------------------------------------------------------

    async def upload(
        self, upload_id: str, declared: UploadData, offset: int, chunks: AsyncIterator[bytes]
    ) -> Uploaded:
        """Receive an upload's chunks from `offset` on, then verify and commit (see the module docstring).
        Returns the version made, by this stream or an earlier one of the same upload id."""
        self._check_upload(upload_id, declared, offset)
        record = await self._begin_record(upload_id, declared)
        if record.version:  # completed by an earlier stream: the same answer again
            return Uploaded(await self._version(declared.model_id, record.version), 0, False)
        if await self._blobs.claim(declared.digest) is not None:  # claimed: no sweep takes it now
            with contextlib.suppress(UploadNotFound):
                await self._blobs.abort(upload_id)
            return Uploaded(await self._commit_version(upload_id, declared), 0, True)
        committed = await self._blobs.begin(upload_id)
        if offset != committed:
            raise _offset_mismatch(upload_id, offset, committed)
        received = 0
        # Chunks that arrive while the blob store writes and hashes the ones before are appended together
        # (a bad one fails the stream before its batch is appended: the upload keeps what came before).
        async with contextlib.aclosing(gathered(chunks, GATHERED_CHUNKS)) as batches:
            async for batch in batches:
                size = 0
                for chunk in batch:
                    await self._check_chunk(upload_id, declared, offset + size, chunk)
                    size += len(chunk)
                try:
                    offset = await self._blobs.append_all(upload_id, offset, batch)
                except OffsetMismatch as exc:  # another stream of this upload appended meanwhile
                    raise _offset_mismatch(upload_id, offset, exc.committed) from None
                received += size
        if offset < declared.size_bytes:
            # Kept for a resume, not refused as a size mismatch: grpc.aio may end the request stream of a
            # call the client cancelled as if the client had finished (a few percent of cuts do).
            raise FailedPrecondition(
                f"the upload stream ended after {offset} of the {declared.size_bytes} bytes declared;"
                " the upload keeps them: continue it from there",
                reason="UPLOAD_INCOMPLETE",
                metadata={"upload_id": upload_id, "committed_offset": str(offset)},
            )
        await self._verify(upload_id, declared)
        return Uploaded(await self._commit_version(upload_id, declared), received, False)

    async def _check_chunk(self, upload_id: str, declared: UploadData, offset: int, chunk: bytes) -> None:
        """Refuse a chunk over the size limit, or one beyond the size declared (which ends the upload)."""
        if len(chunk) > rules.MAX_CHUNK_BYTES:
            raise InvalidArgument(
                "chunk.data",
                f"{len(chunk)} bytes; at most {rules.MAX_CHUNK_BYTES}",
                reason="LIMIT_EXCEEDED",
            )
        if offset + len(chunk) > declared.size_bytes:
            await self._forget(upload_id)
            raise InvalidArgument(
                "chunk.data",
                f"more than the {declared.size_bytes} bytes declared",
                reason="SIZE_MISMATCH",
            )

    @staticmethod
    def _check_upload(upload_id: str, declared: UploadData, offset: int) -> None:
        rules.check_upload_id(upload_id, "header.upload_id")
        rules.check_model_id(declared.model_id, "header.model_id")
        rules.check_digest(declared.digest, "header.digest")
        rules.check_size(declared.size_bytes, "header.size_bytes")
        rules.check_text(declared.media_type, rules.MAX_MEDIA_TYPE, "header.media_type")
        rules.METADATA.check(declared.metadata, "header.metadata")
        if not 0 <= offset <= declared.size_bytes:
            raise InvalidArgument("header.offset", f"must be between 0 and size_bytes, not {offset}")

    async def _begin_record(self, upload_id: str, declared: UploadData) -> UploadData:
        """The upload's record, created if new; a record of other bytes is UPLOAD_MISMATCH."""

        def begin(current: Stored[UploadData] | None) -> UploadData | Unchanged:
            if current is None:
                return declared
            if not current.data.same_upload(declared):
                raise FailedPrecondition(
                    f"upload {upload_id!r} was begun for other bytes (model {current.data.model_id!r},"
                    f" digest {current.data.digest}, {current.data.size_bytes} bytes)",
                    reason="UPLOAD_MISMATCH",
                    metadata={"upload_id": upload_id},
                )
            return UNCHANGED

        stored = await self.uploads.upsert(upload_key(upload_id), begin, ttl=lambda _: self._upload_ttl)
        assert stored is not None
        return stored.data

    async def _verify(self, upload_id: str, declared: UploadData) -> None:
        try:
            await self._blobs.commit(upload_id, declared.digest, declared.size_bytes)
        except DigestMismatch as exc:
            await self._forget(upload_id)
            raise InvalidArgument(
                "header.digest",
                f"the bytes hash to {exc.actual}, not {exc.declared}",
                reason="DIGEST_MISMATCH",
            ) from None
        except SizeMismatch as exc:
            await self._forget(upload_id)
            raise InvalidArgument(
                "header.size_bytes",
                f"{exc.actual} bytes arrived, not the {exc.declared} declared",
                reason="SIZE_MISMATCH",
            ) from None
        except UploadNotFound:  # another stream of the same upload committed it first
            raise FailedPrecondition(
                f"upload {upload_id!r} was completed or removed meanwhile; QueryUpload tells which",
                reason="UPLOAD_NOT_FOUND",
                metadata={"upload_id": upload_id},
            ) from None

    async def _forget(self, upload_id: str) -> None:
        """Drop a failed upload: its bytes and its record (so the same id can start again)."""
        with contextlib.suppress(UploadNotFound):
            await self._blobs.abort(upload_id)
        await self._store.delete(upload_key(upload_id))

    async def _commit_version(self, upload_id: str, declared: UploadData) -> Stored[VersionData]:
        """Write the model's next version for a published blob, once (a retry finds the one it made)."""
        model_id = declared.model_id
        async with self._model_locks.hold(model_id):
            while True:
                model = await self.models.upsert(
                    model_key(model_id),
                    lambda current: (
                        UNCHANGED if current else ModelData(model_id, "", {}, 0, self._clock(), self._clock())
                    ),
                )
                assert model is not None
                latest = model.data.latest_version
                if latest:
                    last = await self._version(model_id, latest)
                    if last.data.upload_id == upload_id:  # made by an earlier, cut-off commit of this upload
                        await self._finish_record(upload_id, latest)
                        return last
                number, now = latest + 1, self._clock()
                data = VersionData(
                    model_id,
                    number,
                    declared.digest,
                    declared.size_bytes,
                    declared.media_type,
                    dict(declared.metadata),
                    now,
                    upload_id,
                )
                try:
                    record = await self._store.put(
                        version_key(model_id, number), VERSION.to_bytes(data), if_match=ABSENT
                    )
                except PreconditionFailed:  # another process wrote it, or a crash left latest behind
                    await self._advance_latest(model_id, number, now)
                    continue
                await self._advance_latest(model_id, number, now)
                await self._finish_record(upload_id, number)
                return Stored(data, record.revision)

    async def _advance_latest(self, model_id: str, number: int, now: int) -> None:
        def advance(current: Stored[ModelData]) -> ModelData | Unchanged:
            if current.data.latest_version >= number:
                return UNCHANGED
            return replace(current.data, latest_version=number, update_time_ns=now)

        await self.models.update(model_key(model_id), advance, etag="")

    async def _finish_record(self, upload_id: str, number: int) -> None:
        def finish(current: Stored[UploadData] | None) -> UploadData | Unchanged:
            return UNCHANGED if current is None else replace(current.data, version=number)

        await self.uploads.upsert(upload_key(upload_id), finish, ttl=lambda _: self._upload_ttl)

    async def query_upload(self, upload_id: str, digest: str) -> UploadState:
        rules.check_upload_id(upload_id)
        if digest:
            rules.check_digest(digest)
        present = bool(digest) and await self._blobs.stat(digest) is not None
        record = await self._store.get(upload_key(upload_id))
        if record is not None:
            data = self.uploads.decode(record).data
            if data.version:
                return UploadState(
                    data.size_bytes, await self._version(data.model_id, data.version), False, present
                )
        try:
            return UploadState(await self._blobs.offset(upload_id), None, True, present)
        except UploadNotFound:
            return UploadState(0, None, False, present)

    async def collect_until(self, stopping: asyncio.Event, interval: float = COLLECT_INTERVAL) -> None:
        """Collect abandoned uploads and orphan blobs now and every `interval` seconds, until `stopping`
        is set."""
        while not stopping.is_set():
            await self.collect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    async def collect(self) -> None:
        """Remove uploads idle for longer than the upload TTL (their records expire with them), then blobs
        no version names that nobody published or claimed for as long. A failure is logged and retried at
        the next interval."""
        for what, collect in (("abandoned uploads", self._collect_uploads), ("orphan blobs", self.sweep)):
            try:
                removed = await collect()
            except Exception:
                log.warning("collecting %s failed", what, exc_info=True)
                continue
            if removed:
                log.info("collected %s", what, extra={"removed": removed})

    async def _collect_uploads(self) -> int:
        return await self._blobs.collect(self._upload_ttl)

    async def sweep(self) -> int:
        """Delete the blobs no version names, published or claimed more than the upload TTL ago; how many.

        Such a blob is left by an upload whose blob was published but whose version record then failed to
        commit (the records store went down in between) and that nobody retried. The grace period spares
        an upload between its publish and its version; a blob about to be named again is claimed first
        (`upload`), and the delete is conditional on the claim time, so a claim during the sweep wins."""
        cutoff = self._clock() / 1e9 - self._upload_ttl
        unclaimed = [info.digest async for info in self._blobs.list() if info.create_time < cutoff]
        if not unclaimed:
            return 0
        named = await self._named_digests()
        removed = 0
        for digest in unclaimed:
            if digest not in named and await self._blobs.delete(digest, claimed_before=cutoff):
                removed += 1
        return removed

    async def _named_digests(self) -> set[str]:
        """The digests of every version (read after the candidates were listed: see `sweep`)."""
        named: set[str] = set()
        after: str | None = None
        while True:
            page = await self._store.list(VERSION_PREFIX, after=after, limit=SWEEP_PAGE)
            named.update(self.versions.decode(record).data.digest for record in page.records)
            if page.next_after is None:
                return named
            after = page.next_after

    # -- reads ---------------------------------------------------------------------------------------------

    async def open_blob(self, ref: str, offset: int, limit: int) -> Opened:
        """Resolve `ref` once, then read that digest's bytes from `offset` (at most `limit`; 0: all)."""
        if offset < 0:
            raise InvalidArgument("offset", "must not be negative")
        if limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        parsed = rules.parse_ref(ref)
        version = None if parsed.digest else await self.resolve(ref)
        digest = parsed.digest or (version.data.digest if version else "")
        info = await self._blobs.stat(digest)
        if info is None:
            raise NotFound(f"no blob {digest}", reason="BLOB_NOT_FOUND", metadata={"digest": digest})
        if offset > info.size:
            raise OutOfRange(
                f"offset {offset} is past the end of {digest} ({info.size} bytes)",
                reason="OFFSET_OUT_OF_RANGE",
                metadata={"size_bytes": str(info.size)},
            )
        return Opened(digest, info.size, version, self._chunks(digest, offset, limit or None))

    async def _chunks(self, digest: str, offset: int, limit: int | None) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._blobs.read(digest, offset, limit):
                yield chunk
        except BlobOutOfRange as exc:  # only if the blob changed size under us, which blobs never do
            raise OutOfRange(str(exc), reason="OFFSET_OUT_OF_RANGE") from None

    # -- watch ---------------------------------------------------------------------------------------------

    async def watch_start(self, resume_token: str, model_id: str) -> str:
        if model_id:
            rules.check_model_id(model_id)
        return resume_token or await self._store.head_cursor()

    async def watch(self, start: str, model_id: str) -> AsyncGenerator[Event, None]:
        """New versions and alias moves after `start`, of `model_id` (or every model)."""
        quiet = 0
        async for change in changes(self._store, "", start):
            key = change.key
            event: Event | None = None
            if key.startswith((VERSION_PREFIX, ALIAS_PREFIX)) and (
                not model_id or split_key(key)[0] == model_id
            ):
                if key.startswith(VERSION_PREFIX) and change.kind is ChangeKind.CREATED and change.record:
                    stored = self.versions.decode(change.record)
                    event = Event("version", change.cursor, change.commit_time, version=stored)
                elif key.startswith(ALIAS_PREFIX) and change.record is not None:
                    event = Event(
                        "alias", change.cursor, change.commit_time, alias=self.aliases.decode(change.record)
                    )
                elif key.startswith(ALIAS_PREFIX):
                    owner, name = split_key(key)
                    event = Event(
                        "alias_deleted", change.cursor, change.commit_time, model_id=owner, alias_name=name
                    )
            if event is None:
                quiet += 1
                if quiet < CHECKPOINT_EVERY:
                    continue
                event = Event("checkpoint", change.cursor, change.commit_time)
            quiet = 0
            yield event


def _alias_subject(model_id: str, alias: str) -> str:
    return f"models/{model_id}/aliases/{alias}"


def _check_etag(current: Stored[Any], etag: str, subject: str) -> None:
    """ABORTED (ETAG_MISMATCH) naming `subject` if `etag` is given and stale. Checked here, before the
    kit's compare-and-set, so that the error names the resource as the contract does, not its store key."""
    if etag and current.etag != etag:
        raise EtagMismatch(subject, etag, current.etag)


def _offset_mismatch(upload_id: str, offset: int, committed: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"upload {upload_id!r} holds {committed} bytes:"
        f" resend the header with offset {committed}, not {offset}",
        reason="OFFSET_MISMATCH",
        metadata={"upload_id": upload_id, "committed_offset": str(committed)},
    )
