"""ModelsClient and SyncModelsClient of the microstate.models.v1 contract, from one declaration.

`ModelOperations` declares the single calls once (`_operations.py`) and writes the conversations, `fetch`
and `push`, once as step generators (`_steps.py`) that each twin drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

from microstate.client import _aio, _options, _sync
from microstate.client._base import ClientBase, Contract, Resource, raise_typed
from microstate.client._operations import iterated, unary
from microstate.client._plans import Exchange, Pages, Stream, Unary, every_page
from microstate.client._read import Page, Read
from microstate.client._steps import Call, Pause, Pump, Steps, drive_async, drive_sync
from microstate.client.errors import (
    Cancelled,
    CircuitOpenError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MicrostateError,
    OutOfRange,
    Unavailable,
    Unknown,
)
from microstate.client.models._cache import CachedRef, CorruptDownload, ModelCache, Partial
from microstate.models.v1 import models_pb2 as pb
from microstate.models.v1 import models_pb2_grpc
from microstate.models.v1.models_pb2 import Alias, Model, Version

log = logging.getLogger("microstate.client")

DEFAULT_TARGET: Final = "localhost:50054"
"""Where `microstate serve models` listens by default."""
ENV_TARGET: Final = _options.ENV_TARGET.format(slice="MODELS")
CHUNK_SIZE: Final = 256 * 1024
"""Bytes per upload chunk (the contract allows up to 1 MiB)."""
MAX_ATTEMPTS: Final = 8
"""Streams a fetch or push opens, at most, each continuing where the last was cut."""
LOCK_POLL: Final = 0.05
"""Seconds between looks at a lock another process holds."""

CONTRACT = Contract(
    name=pb.DESCRIPTOR.package,
    service=pb.DESCRIPTOR.services_by_name["ModelService"].full_name,
    idempotent_methods=(
        "GetModel",
        "ListModels",
        "GetVersion",
        "ListVersions",
        "ResolveRef",
        "GetAlias",
        "ListAliases",
        "QueryUpload",
        "ReadBlob",
        "WatchModels",
    ),
    slice_name="models",
    default_target=DEFAULT_TARGET,
    snapshots=False,  # what survives an outage is the on-disk blob cache, not message snapshots
    # As the server does for uploads: a fixed 1 MiB HTTP/2 window, so a server that sends faster than the
    # SDK hashes and writes cannot fill the SDK's memory (BDP probing let it grow by 13 MiB per GiB).
    channel_options=(("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024 * 1024)),
)

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
Progress = Callable[[int, int], None]
"""progress(bytes done, bytes in all), called as bytes move."""
_DOWN = (Unavailable, DeadlineExceeded, Cancelled, CircuitOpenError)
_CUT = (*_DOWN, Internal, Unknown)
"""What ends a push's stream that asking QueryUpload and continuing may cure. grpc.aio reports a request
stream whose server went away mid-write as INTERNAL "Internal error from Core", whatever the server said
(grpc/grpc#36066); an upload is idempotent by its upload id, so continuing is always safe."""

_MODEL = Resource(Model.FromString, attrgetter("etag"), attrgetter("model_id"))
_VERSION = Resource(Version.FromString, lambda _: "", lambda v: f"{v.model_id}/{v.version}")
_ALIAS = Resource(Alias.FromString, attrgetter("etag"), lambda a: f"{a.model_id}@{a.alias}")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A blob in the local cache, and what it is."""

    path: Path
    """The verified, read-only file."""
    digest: str
    size: int
    model_id: str
    """"" for a fetch by digest."""
    version: int
    """0 for a fetch by digest."""
    stale: bool
    """True when the registry could not be asked and the ref's last resolution was used."""
    age: float
    """Seconds since the registry resolved the ref (0 when it just did)."""
    downloaded: int
    """Bytes this fetch received (0: served from the cache)."""


@dataclass(frozen=True, slots=True)
class AliasMoved:
    """What an alias-moved callback gets."""

    model_id: str
    alias: str
    version: int
    """0 when the alias was deleted."""
    resume_token: str


def parse_ref(ref: str) -> tuple[str, str]:
    """(model, "@alias" or "<n>") of "model@alias" or "model/n"; ("", digest) of "sha256:<hex>"."""
    if ref.startswith("sha256:"):
        return "", ref
    model_id, at, alias = ref.partition("@")
    if at:
        return model_id, "@" + alias
    model_id, slash, number = ref.partition("/")
    if not slash or not number.isdigit():
        raise ValueError(f"not a model ref: {ref!r} (use model@alias, model/N or sha256:<hex>)")
    return model_id, number


class _Chunks:
    """A file's chunks from `offset`, as an upload's request stream reads them, calling `progress` after
    each. gRPC turns an exception out of a request stream into a cancelled call (CancelledError), so a
    failing `progress` ends the stream instead, and `failure` keeps its exception for push to raise."""

    def __init__(self, path: Path, offset: int, progress: Progress | None, total: int) -> None:
        self._path, self._offset, self._progress, self._total = path, offset, progress, total
        self.failure: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        offset = self._offset
        with open(self._path, "rb") as source:
            source.seek(offset)
            while chunk := source.read(CHUNK_SIZE):
                offset += len(chunk)
                yield chunk
                if self._progress is not None:
                    try:
                        self._progress(offset, self._total)
                    except Exception as exc:
                        self.failure = exc
                        return


class ModelOperations(ClientBase):
    """The operations of both model clients. `timeout` is each call's deadline in seconds (None: the
    client's default); `metadata` is added to the client's. Failures raise typed MicrostateErrors."""

    CONTRACT = CONTRACT
    _stub_class = models_pb2_grpc.ModelServiceStub
    cache: ModelCache
    """The blob cache: a ModelCache or its root given to the client (default $MICROSTATE_MODELS_CACHE,
    else ~/.cache/microstate/models)."""

    def _read(
        self, method: str, resource: Any, request: object, timeout: float | None, metadata: CallMetadata
    ) -> Any:
        return self._core.read_live(
            resource, method, request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def _write(self, method: str, request: object, timeout: float | None, metadata: CallMetadata) -> Any:
        return self._core.write(
            method,
            request,
            "",
            lambda response: response,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    def _page(
        self,
        method: str,
        resource: Any,
        request: Any,
        items: str,
        timeout: float | None,
        metadata: CallMetadata,
    ) -> Any:
        """One page of a List call whose response holds `items` and next_page_token."""
        return self._core.list_page(
            resource,
            method,
            request,
            lambda response: (getattr(response, items), response.next_page_token),
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    @unary
    def create_model(
        self,
        model_id: str,
        *,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Model]:
        """Create a model (push creates one that is missing). Raises AlreadyExists, InvalidArgument."""
        request = pb.CreateModelRequest(model_id=model_id, description=description, labels=labels or {})
        return self._write("CreateModel", request, timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def get_model(
        self, model_id: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Read[Model]]:
        """A model, live. Raises NotFound (MODEL_NOT_FOUND)."""
        return self._read("GetModel", _MODEL, pb.GetModelRequest(model_id=model_id), timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def list_models(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[Model]]:
        """One page of models in model_id order."""
        request = pb.ListModelsRequest(page_size=page_size, page_token=page_token)
        return self._page("ListModels", _MODEL, request, "models", timeout, metadata)  # type: ignore[no-any-return]

    @iterated
    def list_models_all(
        self, *, page_size: int = 0, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Pages[Model]:
        """Every model, page by page; `timeout` is per page."""
        return every_page(
            ModelOperations.list_models.plan, self, page_size=page_size, timeout=timeout, metadata=metadata
        )

    @unary
    def list_versions(
        self,
        model_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[Version]]:
        """One page of a model's versions, oldest first."""
        request = pb.ListVersionsRequest(model_id=model_id, page_size=page_size, page_token=page_token)
        return self._page("ListVersions", _VERSION, request, "versions", timeout, metadata)  # type: ignore[no-any-return]

    @iterated
    def list_versions_all(
        self,
        model_id: str,
        *,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Pages[Version]:
        """Every version of a model, oldest first; `timeout` is per page."""
        return every_page(
            ModelOperations.list_versions.plan,
            self,
            model_id,
            page_size=page_size,
            timeout=timeout,
            metadata=metadata,
        )

    @unary
    def resolve(
        self, ref: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Read[Version]]:
        """The version "model@alias" or "model/N" names, live. Raises NotFound, InvalidArgument."""
        return self._read("ResolveRef", _VERSION, pb.ResolveRefRequest(ref=ref), timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def get_alias(
        self, model_id: str, alias: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Read[Alias]]:
        """An alias with its history of moves. Raises NotFound (ALIAS_NOT_FOUND)."""
        request = pb.GetAliasRequest(model_id=model_id, alias=alias)
        return self._read("GetAlias", _ALIAS, request, timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def set_alias(
        self,
        model_id: str,
        alias: str,
        version: int,
        *,
        etag: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Alias]:
        """Point an alias at a version. With `etag` (from get_alias or an earlier set_alias) only if the
        alias is unchanged, else Aborted (ETAG_MISMATCH); etag="absent" creates only."""
        request = pb.SetAliasRequest(model_id=model_id, alias=alias, version=version, etag=etag)
        return self._write("SetAlias", request, timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def delete_alias(
        self,
        model_id: str,
        alias: str,
        *,
        etag: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, pb.DeleteAliasResponse]:
        """Remove an alias (with `etag`, only if unchanged)."""
        request = pb.DeleteAliasRequest(model_id=model_id, alias=alias, etag=etag)
        return self._write("DeleteAlias", request, timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def list_aliases(
        self,
        model_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[Alias]]:
        """One page of a model's aliases, in name order (without their histories)."""
        request = pb.ListAliasesRequest(model_id=model_id, page_size=page_size, page_token=page_token)
        return self._page("ListAliases", _ALIAS, request, "aliases", timeout, metadata)  # type: ignore[no-any-return]

    @unary
    def query_upload(
        self, upload_id: str, *, digest: str = "", timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, pb.UploadStatus]:
        """Where an upload stands (bytes held, or the version it made) and whether `digest` is held."""
        request = pb.QueryUploadRequest(upload_id=upload_id, digest=digest)
        return self._core.write(  # not a write, but its answer must never come from a snapshot either
            "QueryUpload", request, "", lambda r: r, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @unary
    def upload(
        self, requests: Any, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, pb.UploadResponse]:
        """One Upload stream of UploadRequests (header, then chunks); `push` is the resumable way."""
        return self._write("Upload", requests, timeout, metadata)  # type: ignore[no-any-return]

    @iterated
    def read_blob(
        self,
        ref: str,
        *,
        offset: int = 0,
        limit: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Exchange[pb.ReadBlobResponse]:
        """The raw ReadBlob stream: the first response pins digest, size and version, the rest carry
        bytes. `fetch` is the cached, verified, resumable way."""
        request = pb.ReadBlobRequest(ref=ref, offset=offset, limit=limit)
        return Exchange(
            "ReadBlob", request, self._core.timeout(timeout), self._core.metadata(metadata), lambda r: r
        )

    @iterated
    def watch(
        self,
        model_id: str = "",
        *,
        resume_token: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Stream[pb.WatchModelsResponse]:
        """New versions and alias moves (of `model_id`, or every model) from just after `resume_token`
        (None: from now); reconnects by itself and resumes with no gap and no duplicate."""

        def request_for(token: str) -> pb.WatchModelsRequest:
            return pb.WatchModelsRequest(model_id=model_id, resume_token=token)

        return self._core.watch(
            "WatchModels",
            request_for,
            resume_token or "",
            lambda event: event,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    # -- conversations, driven by each twin ------------------------------------------------------------

    def _fetch(
        self, ref: str, progress: Progress | None, timeout: float | None, verify: bool
    ) -> Steps[Fetched]:
        model_id, name = parse_ref(ref)
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if model_id and not name.startswith("@"):  # a version never changes: once cached, ask no one
            known = self.cache.recall((model_id, name))
            if known is not None and self.cache.blob(known.digest) is not None and not verify:
                return self._fetched(known, stale=False, downloaded=0)
        if not model_id:
            resolved = CachedRef(name, -1, "", 0, time.time())
        else:
            try:
                read = yield Call(ModelOperations.resolve.plan(self, ref, timeout=left()))
            except _DOWN:
                cached = self.cache.recall((model_id, name))
                if cached is None or self.cache.blob(cached.digest) is None:
                    raise  # cold cache: the typed error, within the deadline
                log.info("registry unavailable; serving the cached %s", ref)
                return self._fetched(cached, stale=True, downloaded=0)
            version = read.value
            resolved = CachedRef(version.digest, version.size_bytes, model_id, version.version, time.time())
            self.cache.remember((model_id, name), resolved)
            if name.startswith("@"):  # and the version it names, which never changes
                self.cache.remember((model_id, str(resolved.version)), resolved)
        digest = resolved.digest
        cached_path = self.cache.blob(digest)
        if cached_path is not None and (not verify or self.cache.verify(digest)):
            return self._fetched(resolved, stale=False, downloaded=0)
        lock = self.cache.lock(digest)
        while not lock.try_acquire():  # another process (or fetch) downloads it: wait for it
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"another process holds the download lock of {digest}")
            yield Pause(LOCK_POLL)
        try:
            if self.cache.blob(digest) is not None:  # the holder finished it
                return self._fetched(resolved, stale=False, downloaded=0)
            downloaded = yield from self._download(resolved, progress, left)
        finally:
            lock.release()
        return self._fetched(resolved, stale=False, downloaded=downloaded)

    def _download(
        self, resolved: CachedRef, progress: Progress | None, left: Callable[[], float | None]
    ) -> Generator[Any, Any, int]:
        """Stream the digest into its partial file, from what it holds, until whole; verify; publish."""
        partial = self.cache.partial(resolved.digest)
        receiver = _Receiver(partial, resolved.size, progress)
        try:
            if 0 <= resolved.size < partial.offset:  # longer than the blob: not a prefix of it
                partial.discard()
                partial = receiver.partial = self.cache.partial(resolved.digest)
            for attempt in range(MAX_ATTEMPTS):
                if 0 <= receiver.size <= partial.offset:
                    break
                # Built here, not by read_blob: no deadline unless the caller gave one (big blobs take long).
                request = pb.ReadBlobRequest(ref=resolved.digest, offset=partial.offset)
                exchange = Exchange("ReadBlob", request, left(), self._core.metadata(None), _same)
                receiver.expect_header = True
                try:
                    yield Pump(exchange, receiver.take)
                    break
                except _DOWN:
                    if attempt == MAX_ATTEMPTS - 1 or left() == 0:
                        raise
                    backoff = min(0.05 * 2**attempt, 1.0)
                    yield Pause(min(backoff, left() or backoff))  # before the next stream, in the deadline
            partial.finish(receiver.size, self.cache.blob_path(resolved.digest))
        except OutOfRange:  # what the partial file holds is no prefix of the blob
            partial.discard()
            raise
        except BaseException:
            partial.close()
            raise
        return partial.received

    def _fetched(self, resolved: CachedRef, *, stale: bool, downloaded: int) -> Fetched:
        path = self.cache.blob_path(resolved.digest)
        size = resolved.size if resolved.size >= 0 else path.stat().st_size  # a fetch by digest
        age = max(0.0, time.time() - resolved.resolved_at) if stale else 0.0
        return Fetched(
            path, resolved.digest, size, resolved.model_id, resolved.version, stale, age, downloaded
        )

    def _push(
        self,
        model_id: str,
        path: Path,
        media_type: str,
        metadata: Mapping[str, str],
        upload_id: str | None,
        progress: Progress | None,
        timeout: float | None,
    ) -> Steps[pb.UploadResponse]:
        digest, size = self.cache.file_digest(path)  # remembered if the file is unchanged since last time
        upload_id = upload_id or f"{model_id}.{digest[7:47]}"
        for attempt in range(MAX_ATTEMPTS):
            try:
                status = yield Call(ModelOperations.query_upload.plan(self, upload_id, digest=digest))
                if status.state == pb.VERSION_STATE_READY:
                    return pb.UploadResponse(version=status.version)
                offset = 0 if status.digest_present else status.committed_offset
                header = pb.UploadHeader(
                    model_id=model_id,
                    upload_id=upload_id,
                    digest=digest,
                    size_bytes=size,
                    media_type=media_type,
                    metadata=metadata,
                    offset=offset,
                )
                chunks = _Chunks(path, offset, progress, size)
                requests = _upload_requests(header, None if status.digest_present else iter(chunks))
                # Not through upload(): no deadline unless the caller gave one (a big file takes long).
                plan = Unary("Upload", requests, timeout, self._core.metadata(None), _same, raise_typed)
                try:
                    response: pb.UploadResponse = yield Call(plan)
                finally:
                    if chunks.failure is not None:  # the caller's progress callback stopped the push
                        raise chunks.failure
                return response
            except InvalidArgument as exc:
                if exc.reason in ("DIGEST_MISMATCH", "SIZE_MISMATCH"):  # the file changed since it was hashed
                    self.cache.forget_file_digest(path)
                raise
            except (*_CUT, FailedPrecondition) as exc:
                resumable = isinstance(exc, _CUT) or exc.reason in ("OFFSET_MISMATCH", "UPLOAD_INCOMPLETE")
                if not resumable or attempt == MAX_ATTEMPTS - 1:
                    raise
                yield Pause(min(0.05 * 2**attempt, 1.0))  # a backoff, then ask where it stands
        raise AssertionError("unreachable")


class _Receiver:
    """Writes a ReadBlob stream into a partial file; the first response of each stream is its header."""

    def __init__(self, partial: Partial, size: int, progress: Progress | None) -> None:
        self.partial = partial
        self.size = size
        self.expect_header = True
        self._progress = progress

    def take(self, response: pb.ReadBlobResponse) -> None:
        if self.expect_header:
            self.expect_header = False
            if response.digest != self.partial.digest:
                raise CorruptDownload(f"asked for {self.partial.digest}, the server sent {response.digest}")
            self.size = response.size_bytes
        if response.data:
            self.partial.write(response.data)
            if self._progress is not None:
                self._progress(self.partial.offset, self.size)


def _same(message: Any) -> Any:
    return message


def _cache_of(cache: ModelCache | Path | str | None) -> ModelCache:
    return cache if isinstance(cache, ModelCache) else ModelCache(cache)


def _upload_requests(header: pb.UploadHeader, chunks: Iterator[bytes] | None) -> Iterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    for chunk in chunks or ():
        yield pb.UploadRequest(chunk=pb.UploadChunk(data=chunk))


def _alias_event(event: pb.WatchModelsResponse) -> AliasMoved | None:
    if event.event_type == pb.EVENT_TYPE_ALIAS_MOVED:
        return AliasMoved(event.alias.model_id, event.alias.alias, event.alias.version, event.resume_token)
    if event.event_type == pb.EVENT_TYPE_ALIAS_DELETED:
        return AliasMoved(event.alias.model_id, event.alias.alias, 0, event.resume_token)
    return None


class ModelsClient(_aio.AsyncClient, ModelOperations):
    """Async client of microstate.models.v1: `async with ModelsClient("host:port") as models:`."""

    def __init__(
        self,
        target: str | None = None,
        *,
        options: _options.ClientOptions | None = None,
        cache: ModelCache | Path | str | None = None,
    ) -> None:
        super().__init__(target, options=options)
        self.cache = _cache_of(cache)
        self._alias_followers: list[asyncio.Task[None]] = []

    async def fetch(
        self,
        ref: str,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the operation's deadline, given to its calls
        verify: bool = False,
    ) -> Fetched:
        """The local, verified file of "model@alias", "model/N" or "sha256:<hex>", downloaded once.

        The ref is resolved by the registry, then the digest is served from the cache, or downloaded into
        it: to a partial file under a cross-process lock, hashed as it streams, continued after a cut (in
        this call, or by a later one, in any process), verified, then renamed into place read-only. With
        the registry down, a ref resolved before is served from the cache with `stale=True` and its `age`;
        else the typed error (Unavailable, DeadlineExceeded) within `timeout`. CorruptDownload if the
        bytes do not match the digest (nothing is cached). `verify=True` hashes a cached blob again."""
        steps = self._fetch(ref, progress, timeout, verify)
        return await drive_async(steps, self._call, self._exchange)

    async def push(
        self,
        model_id: str,
        path: Path | str,
        *,
        media_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        upload_id: str | None = None,
        progress: Progress | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the operation's deadline, given to its calls
    ) -> pb.UploadResponse:
        """Upload a file as the model's next version; resumes a cut upload from what the registry holds
        and sends no bytes when it holds the digest. The default upload_id is derived from model and
        digest, so pushing the same file again (within a day) returns the same version."""
        steps = self._push(model_id, Path(path), media_type, metadata or {}, upload_id, progress, timeout)
        return await drive_async(steps, self._call, self._exchange)

    def on_alias_moved(
        self, callback: Callable[[AliasMoved], None], model_id: str = ""
    ) -> Callable[[], None]:
        """Call `callback` for every alias move (of `model_id`, or every model) from now on, from a task on
        this loop; returns a function that stops it (close() stops it too)."""

        async def follow() -> None:
            try:
                async for event in self.watch(model_id):
                    moved = _alias_event(event)
                    if moved is not None:
                        callback(moved)
            except MicrostateError:  # the watch failed for good (e.g. RESUME_TOKEN_EXPIRED)
                log.warning("the alias watch failed; alias moves are no longer reported", exc_info=True)

        task = asyncio.get_running_loop().create_task(follow(), name="microstate-models-aliases")
        self._alias_followers.append(task)

        def stop() -> None:
            task.cancel()

        return stop

    async def close(self) -> None:
        for task in self._alias_followers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MicrostateError):
                await task
        self._alias_followers.clear()
        await super().close()


class SyncModelsClient(_sync.SyncClient, ModelOperations):
    """The blocking twin of `ModelsClient`, with the same methods."""

    def __init__(
        self,
        target: str | None = None,
        *,
        options: _options.ClientOptions | None = None,
        cache: ModelCache | Path | str | None = None,
    ) -> None:
        super().__init__(target, options=options)
        self.cache = _cache_of(cache)
        self._stopping = threading.Event()

    def fetch(
        self,
        ref: str,
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
        verify: bool = False,
    ) -> Fetched:
        """See ModelsClient.fetch."""
        return drive_sync(self._fetch(ref, progress, timeout, verify), self._call, self._exchange)

    def push(
        self,
        model_id: str,
        path: Path | str,
        *,
        media_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        upload_id: str | None = None,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> pb.UploadResponse:
        """See ModelsClient.push."""
        steps = self._push(model_id, Path(path), media_type, metadata or {}, upload_id, progress, timeout)
        return drive_sync(steps, self._call, self._exchange)

    def on_alias_moved(
        self, callback: Callable[[AliasMoved], None], model_id: str = ""
    ) -> Callable[[], None]:
        """Call `callback` for every alias move from now on, from a daemon thread; returns a function that
        stops it (close() stops it too)."""
        stop = threading.Event()

        def follow() -> None:
            try:
                for event in self.watch(model_id):
                    if stop.is_set() or self._stopping.is_set():
                        return
                    moved = _alias_event(event)
                    if moved is not None:
                        callback(moved)
            except Exception:  # the watch failed for good, or close() closed the channel under it
                if not (stop.is_set() or self._stopping.is_set()):
                    log.warning("the alias watch failed; alias moves are no longer reported", exc_info=True)

        threading.Thread(target=follow, name="microstate-models-aliases", daemon=True).start()
        return lambda: stop.set()

    def close(self) -> None:
        self._stopping.set()
        super().close()
