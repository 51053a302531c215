"""The MongoDB blob store: blobs as chunk documents, shared by every host that reaches the database.

URL: as the records store's (``mongodb://…/<database>``, ``mongodb+srv://…``; database ``microstate`` by
default); the blob collections sit next to the records' without touching them. Options: ``chunk_size`` and
``clock`` as every blob backend; the rest go to AsyncMongoClient, as for the records store.

Layout, for namespace ``ns``:

- ``blob_uploads.ns``: one document per upload: ``_id`` (the upload id), ``set`` (a random id naming its
  chunks), ``offset`` (bytes committed), ``active`` (last activity, by the store's clock);
- ``blob_chunks.ns``: the bytes, at most 1 MiB per document: ``_id`` ``"<set>:<offset in 20 digits>"``,
  ``set``, ``data``. Zero-padded offsets make ``_id`` order byte order: a read is one range scan of the
  ``_id`` index;
- ``blobs.ns``: one document per blob: ``_id`` (the hex digest), ``size``, ``set``, ``create_time``. A blob
  keeps the chunks its upload wrote: a commit copies nothing;
- ``blob_trash.ns``: sets of deleted blobs, ``_id`` (the set), ``deleted_at``: kept TRASH_GRACE seconds so
  reads under way finish, then removed by `collect`.

Atomicity. An append inserts its chunks and advances the upload's offset in one transaction, conditional on
the offset it expects, so of racing appends one lands and the rest change nothing. A commit deletes the
upload document and inserts the blob document in one transaction: the blob appears whole or not at all.
A delete moves the blob's set to the trash in one transaction. So every set of chunks is named by an upload,
a blob or the trash, except for a moment after an abort or a refused commit (its chunks are removed right
after) or, should the process die in that moment, until `collect` removes such orphans. Transactions need a
replica set, as for the records store (a standalone mongod is refused at open).

Flat memory: as the file backend, appends keep the running SHA-256 in memory and a restarted process hashes
the stored chunks again; reads and re-hashing fetch two chunk documents per round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

from bson import Int64
from pymongo import AsyncMongoClient, ReadPreference, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.write_concern import WriteConcern

from microstate.server.store.base import StoreError, check_namespace
from microstate.server.store.blobs._shared import BlobStoreBase
from microstate.server.store.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobCapabilities,
    BlobInfo,
    BlobNotFound,
    DigestMismatch,
    OffsetMismatch,
    OutOfRange,
    SizeMismatch,
    UploadNotFound,
)
from microstate.server.store.mongo import (
    DEFAULT_CONFLICT_BUDGET,
    _guard,
    _is_write_conflict,
    _unavailable,
    connect,
    create_collections,
    is_durable,
    requiring_transactions,
)

CHUNK_DOCUMENT: Final = 1024 * 1024
"""Bytes of one chunk document at most (MongoDB's limit is 16 MiB; smaller keeps reads' memory small)."""
TRASH_GRACE: Final = 3600.0
"""Seconds the chunks of a deleted blob are kept, so that reads under way finish."""
_BATCH: Final = 2
"""Chunk documents per round trip of a read."""

_T = TypeVar("_T")
_Doc = dict[str, Any]


class _Moved(Exception):
    """The upload changed between our look and our transaction (another process appended, committed or
    removed it): look again."""


def _chunk_id(chunk_set: str, offset: int) -> str:
    return f"{chunk_set}:{offset:020d}"


def _chunk_range(chunk_set: str, start: int) -> _Doc:
    """`_id` bounds of the set's chunks at and after `start`; ";" is the character after ":"."""
    return {"$gte": _chunk_id(chunk_set, start), "$lt": f"{chunk_set};"}


def _info(doc: _Doc) -> BlobInfo:
    return BlobInfo(f"sha256:{doc['_id']}", int(doc["size"]), float(doc["create_time"]))


class MongoBlobs(BlobStoreBase):
    """A BlobStore on MongoDB (see the module docstring for layout and atomicity)."""

    def __init__(
        self,
        client: AsyncMongoClient[_Doc],
        write_concern: WriteConcern,
        database: str,
        namespace: str,
        *,
        chunk_size: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._client = client
        db = client.get_database(
            database, write_concern=write_concern, read_preference=ReadPreference.PRIMARY
        )
        self._uploads: AsyncCollection[_Doc] = db[f"blob_uploads.{namespace}"]
        self._chunks: AsyncCollection[_Doc] = db[f"blob_chunks.{namespace}"]
        self._blobs: AsyncCollection[_Doc] = db[f"blobs.{namespace}"]
        self._trash: AsyncCollection[_Doc] = db[f"blob_trash.{namespace}"]
        self._write_concern = write_concern
        self._chunk_size = chunk_size
        self._clock = clock
        self.capabilities = BlobCapabilities(durable=is_durable(write_concern), shared=True)

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], float] = time.time,
        **client_options: Any,
    ) -> MongoBlobs:
        """Open `namespace` in the database of `url`, creating its collections if needed (safe to race).

        Raises StoreUnavailable if the server cannot be reached within the server selection timeout, and
        StoreError if it cannot run transactions."""
        check_namespace(namespace)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
        connection = connect(url, f"microstate-blobs-{namespace}", client_options)
        store = cls(*connection, namespace, chunk_size=chunk_size, clock=clock)
        try:
            await store._setup()
        except BaseException:
            await store.close()
            raise
        return store

    async def _setup(self) -> None:
        await create_collections(self._uploads, self._chunks, self._blobs, self._trash)
        await _guard(self._chunks.create_index("set", name="set"))
        await _guard(self._uploads.create_index("active", name="active"))
        async with requiring_transactions():
            await self._transact(lambda session: self._uploads.find_one({"_id": ""}, session=session))

    async def ping(self) -> None:
        await _guard(self._client.admin.command("ping"))

    async def close(self) -> None:
        await self._client.close()

    async def _transact(self, work: Callable[[AsyncClientSession], Awaitable[_T]]) -> _T:
        """Run `work` in one transaction, again after a lost write conflict (for a while, with backoff)."""
        deadline = time.monotonic() + DEFAULT_CONFLICT_BUDGET
        attempt = 0
        while True:
            try:
                async with (
                    self._client.start_session() as session,
                    await session.start_transaction(write_concern=self._write_concern),
                ):
                    return await work(session)
            except PyMongoError as exc:
                if _is_write_conflict(exc) and time.monotonic() < deadline:
                    attempt += 1
                    await asyncio.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))  # jittered backoff
                    continue
                unavailable = _unavailable(exc)
                if unavailable is None:
                    raise
                raise unavailable from exc

    async def _chunk_data(self, chunk_set: str, start: int, end: int) -> AsyncIterator[tuple[int, bytes]]:
        """The set's chunk documents covering [start, end) as (offset, data), in order, two per round trip;
        StoreError if one is missing."""
        floor = await _guard(
            self._chunks.find_one(
                {"_id": {"$gte": _chunk_id(chunk_set, 0), "$lte": _chunk_id(chunk_set, start)}},
                projection={"_id": 1},
                sort=[("_id", -1)],
            )
        )
        position = 0 if floor is None else int(floor["_id"].rpartition(":")[2])
        cursor: AsyncCursor[_Doc] = self._chunks.find(
            {"_id": _chunk_range(chunk_set, position)}, sort=[("_id", 1)], batch_size=_BATCH
        )
        try:
            while position < end:
                doc = await _guard(anext(cursor, None))
                if doc is None or int(doc["_id"].rpartition(":")[2]) != position:
                    raise StoreError(f"chunks of set {chunk_set} are missing from offset {position}")
                data: bytes = doc["data"]
                yield position, data
                position += len(data)
        finally:
            await cursor.close()

    async def _hasher_at(self, upload_id: str, chunk_set: str, size: int) -> Any:
        running = self._hashes.get(upload_id, chunk_set, size)
        if running is not None:
            return running
        hasher = hashlib.sha256()
        async for position, data in self._chunk_data(chunk_set, 0, size):
            hasher.update(data[: size - position])
        return hasher

    async def _upload(self, upload_id: str) -> _Doc:
        doc = await _guard(self._uploads.find_one({"_id": upload_id}))
        if doc is None:
            raise UploadNotFound(upload_id)
        return doc

    async def _drop_chunks(self, chunk_set: str) -> None:
        await _guard(self._chunks.delete_many({"set": chunk_set}))

    async def _drop_upload(self, upload_id: str, chunk_set: str) -> None:
        self._hashes.drop(upload_id)
        await _guard(self._uploads.delete_one({"_id": upload_id, "set": chunk_set}))
        await self._drop_chunks(chunk_set)

    # -- the hooks -----------------------------------------------------------------------------------------

    async def _stat(self, hex_digest: str) -> BlobInfo | None:
        doc = await _guard(self._blobs.find_one({"_id": hex_digest}))
        return None if doc is None else _info(doc)

    async def _read(self, hex_digest: str, offset: int, limit: int | None) -> AsyncIterator[bytes]:
        doc = await _guard(self._blobs.find_one({"_id": hex_digest}))
        if doc is None:
            raise BlobNotFound(f"sha256:{hex_digest}")
        size = int(doc["size"])
        if offset > size:
            raise OutOfRange(f"sha256:{hex_digest}", offset, size)
        end = size if limit is None else min(size, offset + limit)
        async for position, data in self._chunk_data(doc["set"], offset, end):
            for start in range(max(offset, position), min(end, position + len(data)), self._chunk_size):
                yield data[start - position : min(end, start + self._chunk_size) - position]

    async def _claim(self, hex_digest: str) -> BlobInfo | None:
        now = {"$set": {"create_time": self._clock()}}
        doc = await _guard(
            self._blobs.find_one_and_update({"_id": hex_digest}, now, return_document=ReturnDocument.AFTER)
        )
        return None if doc is None else _info(doc)

    async def _list(self) -> AsyncIterator[BlobInfo]:
        cursor: AsyncCursor[_Doc] = self._blobs.find({}, projection={"size": 1, "create_time": 1})
        try:
            while (doc := await _guard(anext(cursor, None))) is not None:
                yield _info(doc)
        finally:
            await cursor.close()

    async def _delete(self, hex_digest: str, claimed_before: float | None) -> bool:
        match: _Doc = {"_id": hex_digest}
        if claimed_before is not None:  # one conditional delete: a claim lands before it, or finds nothing
            match["create_time"] = {"$lt": claimed_before}

        async def work(session: AsyncClientSession) -> bool:
            doc = await self._blobs.find_one_and_delete(match, session=session)
            if doc is None:
                return False
            await self._trash.insert_one({"_id": doc["set"], "deleted_at": self._clock()}, session=session)
            return True

        return await self._transact(work)

    async def _begin(self, upload_id: str) -> int:
        now = self._clock()
        doc = {"_id": upload_id, "set": uuid.uuid4().hex, "offset": Int64(0), "active": now}
        try:
            await _guard(self._uploads.insert_one(doc))
        except DuplicateKeyError:
            return await self._offset(upload_id)
        return 0

    async def _offset(self, upload_id: str) -> int:
        return int((await self._upload(upload_id))["offset"])

    async def _append(self, upload_id: str, offset: int, chunk: bytes) -> int:
        doc = await self._upload(upload_id)
        chunk_set, held = doc["set"], int(doc["offset"])
        if offset != held:
            raise OffsetMismatch(upload_id, offset, held)
        hasher = await self._hasher_at(upload_id, chunk_set, held)
        pieces = [
            {"_id": _chunk_id(chunk_set, offset + start), "set": chunk_set, "data": chunk[start:end]}
            for start in range(0, len(chunk), CHUNK_DOCUMENT)
            for end in (start + CHUNK_DOCUMENT,)
        ]

        async def work(session: AsyncClientSession) -> None:
            for piece in pieces:  # one by one: a duplicate then raises DuplicateKeyError, not BulkWriteError
                await self._chunks.insert_one(piece, session=session)
            moved = await self._uploads.update_one(
                {"_id": upload_id, "set": chunk_set, "offset": held},
                {"$set": {"offset": Int64(held + len(chunk)), "active": self._clock()}},
                session=session,
            )
            if moved.matched_count == 0:
                raise _Moved

        try:
            await self._transact(work)
        except (_Moved, DuplicateKeyError):  # another append landed first, or the upload ended
            raise OffsetMismatch(upload_id, offset, await self._offset(upload_id)) from None
        hasher.update(chunk)  # only once committed: a failed append leaves the hash of what is stored
        self._hashes.put(upload_id, chunk_set, held + len(chunk), hasher)
        return held + len(chunk)

    async def _commit(self, upload_id: str, hex_digest: str, size: int) -> BlobInfo:
        while True:
            doc = await self._upload(upload_id)
            chunk_set, held = doc["set"], int(doc["offset"])
            if held != size:
                await self._drop_upload(upload_id, chunk_set)
                raise SizeMismatch(upload_id, size, held)
            actual = (await self._hasher_at(upload_id, chunk_set, held)).hexdigest()
            if actual != hex_digest:
                await self._drop_upload(upload_id, chunk_set)
                raise DigestMismatch(upload_id, f"sha256:{hex_digest}", f"sha256:{actual}")
            blob = {"_id": hex_digest, "size": Int64(size), "set": chunk_set, "create_time": self._clock()}

            async def publish(session: AsyncClientSession, blob: _Doc = blob) -> _Doc:
                """The upload ends and the blob appears in one step; a blob already there wins."""
                ended = await self._uploads.delete_one(
                    {"_id": upload_id, "set": blob["set"], "offset": blob["size"]}, session=session
                )
                if ended.deleted_count == 0:
                    raise _Moved
                held_already = await self._blobs.find_one_and_update(  # claimed: see BlobStore.claim
                    {"_id": hex_digest},
                    {"$set": {"create_time": blob["create_time"]}},
                    return_document=ReturnDocument.AFTER,
                    session=session,
                )
                if held_already is not None:
                    return held_already
                await self._blobs.insert_one(blob, session=session)
                return blob

            try:
                published = await self._transact(publish)
            except (_Moved, DuplicateKeyError):  # changed meanwhile, or the same digest committed just now
                continue
            self._hashes.drop(upload_id)
            if published["set"] != chunk_set:
                await self._drop_chunks(chunk_set)
            return _info(published)

    async def _abort(self, upload_id: str) -> bool:
        doc = await _guard(self._uploads.find_one_and_delete({"_id": upload_id}))
        if doc is None:
            return False
        self._hashes.drop(upload_id)
        await self._drop_chunks(doc["set"])
        return True

    async def _collect(self, older_than: float) -> int:
        now = self._clock()
        removed = 0
        idle = self._uploads.find({"active": {"$lt": now - older_than}})
        for doc in await _guard(idle.to_list()):
            ended = await _guard(self._uploads.delete_one(doc))  # unless it was touched since
            if ended.deleted_count:
                self._hashes.drop(doc["_id"])
                await self._drop_chunks(doc["set"])
                removed += 1
        expired = self._trash.find({"deleted_at": {"$lt": now - max(older_than, TRASH_GRACE)}})
        for doc in await _guard(expired.to_list()):
            await self._drop_chunks(doc["_id"])
            await _guard(self._trash.delete_one({"_id": doc["_id"]}))
        await self._drop_orphans()
        return removed

    async def _drop_orphans(self) -> None:
        """Remove chunk sets nothing names (left by a process that died between two steps). A set only moves
        from an upload to a blob to the trash, so reading the sets first, then uploads, blobs and trash in
        that order, finds every set that is still named somewhere."""
        sets = set(await _guard(self._chunks.distinct("set")))
        for collection, field in ((self._uploads, "set"), (self._blobs, "set"), (self._trash, "_id")):
            if not sets:
                return
            named = collection.find({field: {"$in": sorted(sets)}}, projection={field: 1})
            sets -= {doc[field] for doc in await _guard(named.to_list())}
        for chunk_set in sets:
            await self._drop_chunks(chunk_set)
