"""Offline verification of an exported ledger (JSON Lines, ledger.export_lines) against a checkpoint kept
outside the store and the server's public key; `microstate audit verify` prints the report.

Two verdicts, because they fail for different reasons and call for different responses:

- integrity: every entry present is what was sealed — indexes run 0, 1, 2, … in order, revisions increase,
  each HMAC link verifies (when the chain keys are given), the RFC 6962 root of the first `size` entries
  and the chain head equal the checkpoint's, and every checkpoint in the ledger is signed and agrees with
  the entries. Edits, insertions, deletions, reordering, and a rewrite re-chained by someone holding the
  HMAC key all break it (the checkpoint's root was signed with a key they do not hold).
- completeness: nothing the checkpoint vouches for is missing — the ledger holds at least `size` entries,
  and its own newest checkpoint is not older than the outside one. Truncating the tail or deleting the
  whole ledger (chain and in-store checkpoints included) breaks it.
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
from binascii import a2b_base64, a2b_hex
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import chain, islice
from operator import lt

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from microstate.server.audit import merkle
from microstate.server.audit.checkpoints import Checkpoint
from microstate.server.audit.entries import encode_fields
from microstate.server.audit.ledger import ZERO_MAC

MAX_PROBLEMS = 20
"""Problems listed per verdict; the rest are counted."""


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def ok(self) -> bool:
        return self.count == 0

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


@dataclass
class Report:
    checkpoint: Checkpoint
    entries: int = 0
    integrity: Verdict = field(default_factory=Verdict)
    completeness: Verdict = field(default_factory=Verdict)
    chain_checked: bool = False

    @property
    def ok(self) -> bool:
        return self.integrity.ok and self.completeness.ok

    def lines(self) -> list[str]:
        out = [
            f"ledger {self.checkpoint.log_id}: {self.entries} entries;"
            f" checkpoint of {self.checkpoint.size} entries",
            f"integrity: {'OK' if self.integrity.ok else 'FAILED'}"
            + ("" if self.chain_checked else " (HMAC chain not checked: no chain keys given)"),
            *(f"  - {problem}" for problem in self.integrity.problems),
            f"completeness: {'OK' if self.completeness.ok else 'FAILED'}",
            *(f"  - {problem}" for problem in self.completeness.problems),
        ]
        for verdict in (self.integrity, self.completeness):
            if verdict.count > len(verdict.problems):
                out.append(f"  ({verdict.count - len(verdict.problems)} more problems not listed)")
        return out


CHUNK = 4096
"""Lines checked together by the fast path."""
_ENTRY_LINE = re.compile(
    rb'\{"index":(0|[1-9][0-9]{0,19}),"revision":(0|[1-9][0-9]{0,19}),"key_id":"([^"\\\x00-\x1f]*)",'
    rb'"entry_b64":"([A-Za-z0-9+/]*={0,2})","mac":"([0-9a-fA-F]{64})"\}[ \t\r\n]*'
)
"""An entry line exactly as `ledger.export_lines` writes it (without `readable`): no escapes, no extra
keys, plain integers, so a match parses to what json.loads would give. Anything else takes the general,
per-line path."""


def verify(
    lines: Iterable[str],
    checkpoint: Checkpoint,
    public_key: Ed25519PublicKey,
    chain_keys: dict[str, bytes] | None = None,
    *,
    chunk: int = CHUNK,
) -> Report:
    """Check the exported ledger `lines` against `checkpoint` (the newest one kept outside the store);
    `chunk` lines at a time on the fast path (a chunk with any problem is checked again line by line)."""
    report = Report(checkpoint, chain_checked=chain_keys is not None)
    integrity, completeness = report.integrity, report.completeness
    if not checkpoint.verifies(public_key):
        integrity.add("the outside checkpoint's signature does not verify with this public key")
    check = _Pass(checkpoint, integrity, chain_keys)
    # One pass, holding one chunk of lines: the export lists the ledger's checkpoints first, so the sizes
    # whose roots are wanted are known before the entries stream by.
    number, remaining = 0, iter(lines)
    while lines_now := list(islice(remaining, chunk)):
        if not check.chunk(lines_now):
            for offset, line in enumerate(lines_now, number + 1):
                check.line(offset, line)
        number += len(lines_now)
    frontier, roots, stored, log_id = check.frontier, check.roots, check.stored, checkpoint.log_id
    report.entries = frontier.size
    _against(checkpoint, roots, integrity, "the outside checkpoint")
    if frontier.size < checkpoint.size:
        completeness.add(
            f"the checkpoint vouches for {checkpoint.size} entries, the ledger holds {frontier.size}:"
            " entries were truncated or deleted"
        )
    for each in stored:
        if each.log_id != log_id or not each.verifies(public_key):
            integrity.add(f"the ledger's checkpoint of size {each.size} is not signed by this key")
        elif each.size <= frontier.size:
            _against(each, roots, integrity, f"the ledger's checkpoint of size {each.size}")
    newest_stored = max((each.size for each in stored), default=0)
    if newest_stored < checkpoint.size:
        completeness.add(
            f"the ledger's newest checkpoint is of size {newest_stored}, older than the outside one"
            f" ({checkpoint.size}): checkpoints were deleted"
        )
    return report


class _Pass:
    """The state of one pass over an export: the Merkle frontier, the previous entry's MAC and revision,
    the roots at the sizes checkpoints name, the ledger's own checkpoints."""

    def __init__(
        self, checkpoint: Checkpoint, integrity: Verdict, chain_keys: dict[str, bytes] | None
    ) -> None:
        self.integrity = integrity
        self.chain_keys = chain_keys
        self.links = {key_id.encode(): _Link(key) for key_id, key in (chain_keys or {}).items()}
        self.frontier = merkle.Frontier()
        self.roots: dict[int, tuple[bytes, bytes]] = {}  # size -> (root, head) at each size wanted
        self.stored: list[Checkpoint] = []
        self.wanted = {checkpoint.size}
        self.previous_mac, self.previous_revision = ZERO_MAC, 0
        # RFC 6962's leaf prefix, then the leaf's first field (leaf_of's log id)
        self.leaf_prefix = b"\x00" + encode_fields([checkpoint.log_id])

    def line(self, number: int, line: str) -> None:
        """Check one line of any form, reporting each problem."""
        integrity = self.integrity
        if not line.strip():
            return
        try:
            data = json.loads(line)
            if "checkpoint" in data:
                self.stored.append(Checkpoint.from_json(json.dumps(data["checkpoint"])))
                self.wanted.add(self.stored[-1].size)
                return
            if "unreadable" in data:
                integrity.add(f"line {number}: a ledger record that does not decode")
                return
            index, revision, key_id = data["index"], data["revision"], data["key_id"]
            entry, mac = a2b_base64(data["entry_b64"]), bytes.fromhex(data["mac"])
            if type(index) is not int or type(revision) is not int or type(key_id) is not str:
                raise TypeError("index, revision and key_id must be two integers and a string")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            integrity.add(f"line {number}: not a ledger line ({exc})")
            return
        frontier = self.frontier
        position = frontier.size
        if index != position:
            integrity.add(f"entry {position}: holds index {index} (inserted, deleted or reordered)")
        if revision <= self.previous_revision:
            integrity.add(f"entry {position}: revision {revision} does not follow {self.previous_revision}")
        hashed = sha256(
            b"".join((self.leaf_prefix, _field(str(index).encode()), _field(str(revision).encode()),
                      _field(key_id.encode()), _field(entry)))
        ).digest()  # fmt: skip
        if self.chain_keys is not None:
            key = self.chain_keys.get(key_id)
            if key is None:
                integrity.add(f"entry {position}: chained with unknown key {key_id!r}")
            elif not hmac.compare_digest(hmac.digest(key, self.previous_mac + hashed, "sha256"), mac):
                integrity.add(f"entry {position}: its HMAC link does not verify")
        frontier.append(hashed)
        self.previous_mac, self.previous_revision = mac, revision
        if frontier.size in self.wanted:
            self.roots[frontier.size] = (frontier.root(), mac)

    def chunk(self, lines: list[str]) -> bool:
        """Check `lines` in bulk if each is an entry line in the export's own form and all of them verify
        (True); otherwise change nothing and return False, and the caller checks them line by line, which
        reports the problems. This is the verifier's whole cost: no object per entry, one comprehension
        per step (parse, leaf hashes, HMAC links, Merkle levels)."""
        match = _ENTRY_LINE.fullmatch
        matches = [match(line.encode()) for line in lines]
        if None in matches:
            return False
        fields = zip(*(found.groups() for found in matches if found is not None), strict=True)
        indexes, revision_texts, key_ids, entries_b64, macs_hex = fields
        position = self.frontier.size
        if list(map(int, indexes)) != list(range(position, position + len(lines))):
            return False
        revisions = list(map(int, revision_texts))
        if not all(map(lt, chain((self.previous_revision,), revisions), revisions)):
            return False
        try:
            entries = list(map(a2b_base64, entries_b64))
        except binascii.Error:
            return False
        macs = list(map(a2b_hex, macs_hex))
        prefix, key_fields = self.leaf_prefix, {key_id: _field(key_id) for key_id in set(key_ids)}
        hashed = [
            sha256(b"".join((prefix, _LENGTHS[len(index)], index, _LENGTHS[len(revision)], revision,
                             key_fields[key_id], len(entry).to_bytes(4, "big"), entry))).digest()
            for index, revision, key_id, entry in zip(indexes, revision_texts, key_ids, entries, strict=True)
        ]  # fmt: skip
        if self.chain_keys is not None:
            # Each link is HMAC(key, previous MAC ‖ leaf hash), the previous MAC read from the export: the
            # links are independent checks, all of them made.
            try:
                links = [self.links[key_id] for key_id in key_ids]
            except KeyError:
                return False
            previous = chain((self.previous_mac,), macs)
            if list(map(_Link.__call__, links, previous, hashed)) != macs:
                return False
        self.previous_mac, self.previous_revision = macs[-1], revisions[-1]
        frontier, at = self.frontier, 0
        for size in sorted(size for size in self.wanted if position < size <= position + len(lines)):
            frontier.extend(hashed[at : size - position])
            at = size - position
            self.roots[size] = (frontier.root(), macs[at - 1])
        frontier.extend(hashed[at:])
        return True


class _Link:
    """HMAC-SHA256 under one chain key (RFC 2104), its padded-key hash states computed once and copied per
    message: the chain check's cost, about half of `hmac.digest`'s, which keys OpenSSL anew each call.
    Only ever compared with MACs made by `hmac` (the sealer): a mistake here fails honest ledgers."""

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


_LENGTHS = [length.to_bytes(4, "big") for length in range(21)]
"""The length prefixes of an index's or revision's digits (at most 20, as _ENTRY_LINE allows)."""


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw


def _against(
    checkpoint: Checkpoint, roots: dict[int, tuple[bytes, bytes]], verdict: Verdict, name: str
) -> None:
    found = roots.get(checkpoint.size) if checkpoint.size else (merkle.EMPTY_ROOT, ZERO_MAC)
    if found is None:
        return  # fewer entries than it covers: a completeness problem, reported as such
    root, head = found
    if root != checkpoint.root:
        verdict.add(
            f"{name}: the Merkle root of the first {checkpoint.size} entries differs (entries changed)"
        )
    if head != checkpoint.head:
        verdict.add(f"{name}: the chain head after entry {checkpoint.size - 1} differs")
