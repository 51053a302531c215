"""The sealed ledger: journal entries chained with HMAC, hashed into an RFC 6962 tree, checkpointed.

Writes append their encoded Entry to the namespace's audit journal atomically (audited.py); the journal is
keyed by the write's revision, so it is in commit order. `Sealer` turns it into the ledger, kept in the
records store of namespace `<namespace>.audit` (`ledger_namespace`) under these keys:

- `e/<first index, 20 digits>`: a batch of sealed entries, each {index, revision, key id, entry, mac}
  with `leaf = encode(log id, index, revision, key id, entry)` and
  `mac_i = HMAC-SHA256(chain_keys[key id], mac_{i-1} ‖ SHA-256(0x00 ‖ leaf))` (mac_{-1} = 32 zero bytes);
- `c/<size, 20 digits>`: a signed checkpoint (checkpoints.py), JSON;
- `head`: the sealer's state (size, last revision sealed, chain head, Merkle frontier, last checkpoint).

Each batch is written with if_match=ABSENT and the head with compare-and-set, so any number of sealers
(one per server process sharing the store) seal each journal entry exactly once, and a sealer that crashed
between a batch and its head is caught up by the next one (it adopts the batches past the head).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint, append_to_file
from microstate.server.audit.entries import Entry, decode_fields, encode_fields
from microstate.server.audit.keys import AuditKeys
from microstate.server.store.base import ABSENT, PreconditionFailed, Store

log = logging.getLogger(__name__)

ZERO_MAC = bytes(32)
BATCH = 512
"""Journal entries sealed per ledger record."""
DEFAULT_CHECKPOINT_EVERY = 1024
DEFAULT_CHECKPOINT_SECONDS = 60.0
HEAD = "head"
ENTRIES = "e/"
CHECKPOINTS = "c/"


class Journal(Protocol):
    async def audit_journal(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(revision, entry) of the journal entries after `revision`, in revision order, at most `limit`."""
        ...


def ledger_namespace(namespace: str) -> str:
    """The store namespace holding the sealed ledger of `namespace`."""
    return f"{namespace}.audit"


def batch_key(first: int) -> str:
    return f"{ENTRIES}{first:020d}"


def checkpoint_key(size: int) -> str:
    return f"{CHECKPOINTS}{size:020d}"


def leaf_of(log_id: str, index: int, revision: int, key_id: str, entry: bytes) -> bytes:
    return encode_fields([log_id, str(index), str(revision), key_id, entry])


def chain(key: bytes, previous_mac: bytes, hashed_leaf: bytes) -> bytes:
    return hmac.new(key, previous_mac + hashed_leaf, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Sealed:
    """One ledger entry."""

    index: int
    revision: int
    key_id: str
    entry: bytes
    mac: bytes

    def encode(self) -> bytes:
        return encode_fields([str(self.index), str(self.revision), self.key_id, self.entry, self.mac])

    @classmethod
    def decode(cls, data: bytes) -> Sealed:
        index, revision, key_id, entry, mac = decode_fields(data)
        return cls(int(index), int(revision), key_id.decode(), entry, mac)

    def leaf(self, log_id: str) -> bytes:
        return leaf_of(log_id, self.index, self.revision, self.key_id, self.entry)

    def to_json(self, *, readable: bool = False) -> dict[str, Any]:
        """The export form: the fields a verifier hashes; `readable` adds the entry decoded for people
        (which doubles what a verifier parses)."""
        data: dict[str, Any] = {
            "index": self.index,
            "revision": self.revision,
            "key_id": self.key_id,
            "entry_b64": base64.b64encode(self.entry).decode(),
            "mac": self.mac.hex(),
        }
        if readable:
            try:
                data["entry"] = _entry_dict(Entry.decode(self.entry))
            except (ValueError, TypeError, UnicodeDecodeError):
                data["entry"] = "undecodable"
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sealed:
        return cls(
            int(data["index"]),
            int(data["revision"]),
            str(data["key_id"]),
            base64.b64decode(data["entry_b64"]),
            bytes.fromhex(data["mac"]),
        )


def _entry_dict(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in entry.__slots__}


def decode_batch(data: bytes) -> list[Sealed]:
    return [Sealed.decode(each) for each in decode_fields(data)]


@dataclass
class _State:
    size: int = 0
    revision: int = 0
    mac: bytes = ZERO_MAC
    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    checkpointed: int = 0
    checkpoint_time_ns: int = 0
    record_revision: int | None = None
    """The store revision of the `head` record this state was read from (None: there was none)."""

    def encode(self) -> bytes:
        return encode_fields(
            [
                str(self.size),
                str(self.revision),
                self.mac,
                str(self.checkpointed),
                str(self.checkpoint_time_ns),
                *self.frontier.hashes,
            ]
        )

    @classmethod
    def decode(cls, data: bytes, record_revision: int) -> _State:
        size, revision, mac, checkpointed, checkpoint_time, *hashes = decode_fields(data)
        return cls(
            int(size),
            int(revision),
            mac,
            merkle.Frontier(int(size), hashes),
            int(checkpointed),
            int(checkpoint_time),
            record_revision,
        )

    def adopt(self, log_id: str, sealed: Sealed) -> None:
        if sealed.index != self.size:
            raise ValueError(f"ledger entry {sealed.index} found where {self.size} belongs")
        self.frontier.append(merkle.leaf_hash(sealed.leaf(log_id)))
        self.size += 1
        self.revision = sealed.revision
        self.mac = sealed.mac


class Sealer:
    """Seals one namespace's journal into its ledger and emits checkpoints; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        ledger: Store,
        log_id: str,
        keys: AuditKeys,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        checkpoint_file: Path | None = None,
        batch: int = BATCH,
    ) -> None:
        self.batch = batch
        """Journal entries sealed per ledger record."""
        self.journal = journal
        self.ledger = ledger
        self.log_id = log_id
        self.keys = keys
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_file = checkpoint_file
        self.on_checkpoint: list[Callable[[Checkpoint], None]] = []
        """Called with each checkpoint this sealer signs (after it is in the ledger and the file)."""

    async def state(self) -> _State:
        record = await self.ledger.get(HEAD)
        state = _State() if record is None else _State.decode(record.value, record.revision)
        while (batch := await self.ledger.get(batch_key(state.size))) is not None:
            for sealed in decode_batch(batch.value):  # sealed by a sealer that stopped before its head
                state.adopt(self.log_id, sealed)
        return state

    async def seal(self, *, force_checkpoint: bool = False) -> int:
        """Seal the journal entries not yet in the ledger (at most `batch`) and write a checkpoint when one is
        due; the number of entries found pending (another sealer may have sealed them first: then the next
        call adopts its batch), 0 when the journal is sealed."""
        state = await self.state()
        pending = await self.journal.audit_journal(state.revision, self.batch)
        sealed_now = 0
        if pending:
            key_id = self.keys.current_key_id
            key = self.keys.chain_keys[key_id]
            first = state.size
            batch: list[bytes] = []
            for revision, entry in pending:
                index = state.size
                hashed = merkle.leaf_hash(leaf_of(self.log_id, index, revision, key_id, entry))
                mac = chain(key, state.mac, hashed)
                batch.append(Sealed(index, revision, key_id, entry, mac).encode())
                state.frontier.append(hashed)
                state.size, state.revision, state.mac = index + 1, revision, mac
            try:
                await self.ledger.put(batch_key(first), encode_fields(batch), if_match=ABSENT)
            except PreconditionFailed:
                return len(pending)  # another sealer sealed these; the next round adopts its batch
            sealed_now = len(pending)
        now = time.time_ns()
        due = state.size - state.checkpointed >= self.checkpoint_every or (
            now - state.checkpoint_time_ns >= self.checkpoint_seconds * 1e9
        )
        if state.size > state.checkpointed and (due or force_checkpoint):
            await self._checkpoint(state, now)
        if sealed_now or state.checkpoint_time_ns == now:
            with contextlib.suppress(PreconditionFailed):  # another sealer moved the head on: it knows more
                await self.ledger.put(
                    HEAD,
                    state.encode(),
                    if_match=ABSENT if state.record_revision is None else state.record_revision,
                )
        return sealed_now

    async def _checkpoint(self, state: _State, now: int) -> Checkpoint:
        checkpoint = Checkpoint(self.log_id, state.size, state.frontier.root(), state.mac, now).signed(
            self.keys.signing_key
        )
        with contextlib.suppress(PreconditionFailed):  # the same size checkpointed already by another sealer
            await self.ledger.put(checkpoint_key(state.size), checkpoint.to_json().encode(), if_match=ABSENT)
        if self.checkpoint_file is not None:
            await asyncio.to_thread(append_to_file, self.checkpoint_file, checkpoint)
        state.checkpointed, state.checkpoint_time_ns = state.size, now
        for listener in self.on_checkpoint:
            listener(checkpoint)
        return checkpoint

    async def seal_all(self) -> Checkpoint | None:
        """Seal everything pending and checkpoint it: the newest checkpoint (None for an empty ledger)."""
        while await self.seal():
            pass
        await self.seal(force_checkpoint=True)
        return await newest_checkpoint(self.ledger)

    async def close(self) -> None:
        await self.ledger.close()

    async def run(self, stopping: asyncio.Event, interval: float = 0.5) -> None:
        """Seal every `interval` seconds until `stopping` is set; a failed round is logged and retried."""
        while not stopping.is_set():
            try:
                while await self.seal() == self.batch:
                    pass
            except Exception as exc:  # the store is down: the journal keeps the entries, seal them later
                log.warning(
                    "audit: sealing failed; retrying",
                    extra={"phase": "audit", "error": f"{type(exc).__name__}: {exc}"},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)


async def _records(ledger: Store, prefix: str) -> AsyncIterator[bytes]:
    after: str | None = None
    while True:
        page = await ledger.list(prefix, after=after, limit=100)
        for record in page.records:
            yield record.value
        if page.next_after is None:
            return
        after = page.next_after


async def newest_checkpoint(ledger: Store) -> Checkpoint | None:
    newest: Checkpoint | None = None
    async for value in _records(ledger, CHECKPOINTS):
        newest = Checkpoint.from_json(value)
    return newest


async def export_lines(ledger: Store, *, readable: bool = False) -> AsyncIterator[str]:
    """The ledger as JSON Lines: each checkpoint ({"checkpoint": ...}), then each entry ({"index", ...}):
    checkpoints first, so a verifier knows which roots to compute in one pass over the entries. `readable`
    adds each entry's fields decoded (Sealed.to_json)."""
    async for value in _records(ledger, CHECKPOINTS):
        try:
            yield json.dumps({"checkpoint": json.loads(value)}, separators=(",", ":"))
        except ValueError:  # kept, so that the verifier reports it
            yield json.dumps({"unreadable": base64.b64encode(value).decode()})
    async for value in _records(ledger, ENTRIES):
        try:
            batch = decode_batch(value)
        except (ValueError, UnicodeDecodeError):  # kept, so that the verifier reports it
            yield json.dumps({"unreadable": base64.b64encode(value).decode()})
            continue
        for sealed in batch:
            yield json.dumps(sealed.to_json(readable=readable), separators=(",", ":"))
