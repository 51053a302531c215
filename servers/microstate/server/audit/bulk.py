"""The verifier's fast path: a chunk of export lines parsed, leaf-hashed and HMAC-checked in bulk, in this
process or in worker processes.

`digest_chunk` takes lines in the exporter's own form only (`ENTRY_LINE`) and returns what the verifier's
pass needs to go on (`Digest`: the leaf hashes and MACs, the first index and the revision range), or None
when any line is in another form or any check inside the chunk fails; the verifier then checks that chunk
line by line, which reports the problems. The links inside a chunk are independent checks (each entry's
HMAC over the previous entry's MAC, read from the export), so chunks can be checked in any process; the
pass checks what joins a chunk to the one before (the first index, revision and link) and merges the leaf
hashes into its Merkle frontier, in order.
"""

from __future__ import annotations

import binascii
import io
import multiprocessing
import os
import re
import threading
from binascii import a2b_base64, a2b_hex
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from operator import lt
from pathlib import Path

from microstate.server.audit.entries import encode_fields

ENTRY_LINE = re.compile(
    rb'\{"index":(0|[1-9][0-9]{0,19}),"revision":(0|[1-9][0-9]{0,19}),"key_id":"([^"\\\x00-\x1f]*)",'
    rb'"entry_b64":"([A-Za-z0-9+/]*={0,2})","mac":"([0-9a-fA-F]{64})"\}[ \t\r\n]*'
)
"""An entry line exactly as `ledger.export_lines` writes it (without `readable`): no escapes, no extra
keys, plain integers, so a match parses to what json.loads would give."""
_LENGTHS = [length.to_bytes(4, "big") for length in range(21)]
"""The length prefixes of an index's or revision's digits (at most 20, as ENTRY_LINE allows)."""


class Link:
    """HMAC-SHA256 under one chain key (RFC 2104), its padded-key hash states computed once and copied per
    message: about half the cost of `hmac.digest`, which keys OpenSSL anew each call. Only ever compared
    with MACs made by `hmac` (the sealer): a mistake here fails honest ledgers, it cannot pass others."""

    BLOCK = 64

    def __init__(self, key: bytes) -> None:
        if len(key) > self.BLOCK:
            key = sha256(key).digest()
        key = key.ljust(self.BLOCK, b"\0")
        self.inner = sha256(bytes(byte ^ 0x36 for byte in key))
        self.outer = sha256(bytes(byte ^ 0x5C for byte in key))

    def __call__(self, previous_mac: bytes, hashed: bytes) -> bytes:
        inner, outer = self.inner.copy(), self.outer.copy()
        inner.update(previous_mac + hashed)
        outer.update(inner.digest())
        return outer.digest()


def links_of(chain_keys: dict[str, bytes] | None) -> dict[bytes, Link] | None:
    """A Link per chain key, by key id as it appears in an export line (UTF-8)."""
    if chain_keys is None:
        return None
    return {key_id.encode(): Link(key) for key_id, key in chain_keys.items()}


@dataclass(frozen=True, slots=True)
class Digest:
    """A chunk of entries that are well formed and consistent among themselves."""

    first_index: int
    first_revision: int
    last_revision: int
    first_key_id: bytes
    hashed: list[bytes]
    """The leaf hashes, SHA-256(0x00 ‖ leaf), in order."""
    macs: list[bytes]


def digest_chunk(lines: Sequence[bytes], log_id: str, links: dict[bytes, Link] | None) -> Digest | None:
    """The Digest of `lines`, or None if any is not an entry line in the export's form, the indexes do not
    count up by one, the revisions do not increase, or (with `links`) a link after the first does not
    verify or names an unknown key. No object per entry: one comprehension per step."""
    match = ENTRY_LINE.fullmatch
    matches = list(map(match, lines))
    if not matches or None in matches:
        return None
    fields = zip(*(found.groups() for found in matches if found is not None), strict=True)
    indexes, revision_texts, key_ids, entries_b64, macs_hex = fields
    first = int(indexes[0])
    if list(map(int, indexes)) != list(range(first, first + len(lines))):
        return None
    revisions = list(map(int, revision_texts))
    if not all(map(lt, revisions, revisions[1:])):
        return None
    try:
        entries = list(map(a2b_base64, entries_b64))
    except binascii.Error:
        return None
    macs = list(map(a2b_hex, macs_hex))
    # leaf_of(log_id, index, revision, key_id, entry), after RFC 6962's 0x00 leaf prefix
    prefix, key_fields = (
        b"\x00" + encode_fields([log_id]),
        {key_id: length_prefixed(key_id) for key_id in set(key_ids)},
    )
    hashed = [
        sha256(b"".join((prefix, _LENGTHS[len(index)], index, _LENGTHS[len(revision)], revision,
                         key_fields[key_id], len(entry).to_bytes(4, "big"), entry))).digest()
        for index, revision, key_id, entry in zip(indexes, revision_texts, key_ids, entries, strict=True)
    ]  # fmt: skip
    if links is not None:
        try:
            keyed = [links[key_id] for key_id in key_ids[1:]]
        except KeyError:
            return None
        if list(map(Link.__call__, keyed, macs, hashed[1:])) != macs[1:]:
            return None
    return Digest(first, revisions[0], revisions[-1], key_ids[0], hashed, macs)


def length_prefixed(raw: bytes) -> bytes:
    """`raw` after its 4-byte big-endian length: one field of a Merkle leaf (entries.encode_fields)."""
    return len(raw).to_bytes(4, "big") + raw


Range = tuple[int, int]
"""A chunk of an export file: the offsets of its first byte and of the byte after it, at line ends."""


def ranges(path: Path, size: int) -> Iterator[Range]:
    """`path` cut into ranges of about `size` bytes, each ending at the end of a line (or of the file)."""
    with open(path, "rb") as data:
        total, start = os.fstat(data.fileno()).st_size, 0
        while start < total:
            data.seek(start + size)
            data.readline()  # on to the end of the line the cut fell in
            end = min(data.tell(), total)
            yield start, end
            start = end


def read_lines(path: Path, where: Range) -> list[str]:
    """The lines of a range as iterating over the file in text mode gives them (universal newlines): the
    ranges' lines, one after another, are the file's."""
    start, end = where
    with open(path, "rb") as data:
        data.seek(start)
        return list(io.TextIOWrapper(io.BytesIO(data.read(end - start)), encoding="utf-8"))


def digested(
    path: Path, log_id: str, chain_keys: dict[str, bytes] | None, workers: int, size: int
) -> Iterator[tuple[Range, Digest | None]]:
    """Each range of the export file at `path` with its Digest (None: check it line by line), in order,
    digested by `workers` processes that read the file themselves, a few ranges ahead of the caller."""
    # fork is quick and copies no state the digest needs to build; a process with threads (an event loop's
    # helpers) may hold locks a forked child would inherit held: spawn there.
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
    with ProcessPoolExecutor(
        workers, context, initializer=_start_worker, initargs=(log_id, chain_keys)
    ) as pool:
        pending: deque[tuple[Range, Future[Digest | None]]] = deque()
        for where in ranges(path, size):
            pending.append((where, pool.submit(_digest_in_worker, path, where)))
            if len(pending) > 2 * workers:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())


def _result(where: Range, future: Future[Digest | None]) -> tuple[Range, Digest | None]:
    try:
        return where, future.result()
    except Exception:  # a worker that died: the range is checked by the caller, line by line
        return where, None


_worker: tuple[str, dict[bytes, Link] | None] = ("", None)


def _start_worker(log_id: str, chain_keys: dict[str, bytes] | None) -> None:
    global _worker
    _worker = (log_id, links_of(chain_keys))


def _digest_in_worker(path: Path, where: Range) -> Digest | None:
    start, end = where
    with open(path, "rb") as data:
        data.seek(start)
        lines = data.read(end - start).split(b"\n")
    if lines[-1] == b"":  # the range ends with a line's newline
        lines.pop()
    # A lone \r, which text mode reads as a line end too, makes a line not match: the caller's text-mode
    # reading of the range decides.
    return digest_chunk(lines, *_worker)
