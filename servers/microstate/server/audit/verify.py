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
from binascii import a2b_base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import islice
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from microstate.server.audit import bulk, merkle
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
CHUNK_BYTES = 1 << 21
"""Bytes of an export file a worker process checks together (about 3,000 lines)."""


def verify(
    lines: Iterable[str],
    checkpoint: Checkpoint,
    public_key: Ed25519PublicKey,
    chain_keys: dict[str, bytes] | None = None,
    *,
    chunk: int = CHUNK,
) -> Report:
    """Check the exported ledger `lines` against `checkpoint` (the newest one kept outside the store), in
    this process: `chunk` lines at a time on the fast path (bulk.py; a chunk with any problem is checked
    again line by line)."""
    report, check = _started(checkpoint, public_key, chain_keys)
    # One pass, holding one chunk of lines: the export lists the ledger's checkpoints first, so the sizes
    # whose roots are wanted are known before the entries stream by.
    number, remaining = 1, iter(lines)
    while lines_now := list(islice(remaining, chunk)):
        raw = [line.encode(errors="surrogatepass") for line in lines_now]  # a lone surrogate: line by line
        digest = bulk.digest_chunk(raw, checkpoint.log_id, check.links)
        check.take(number, lines_now, digest)
        number += len(lines_now)
    return _finished(report, check)


def verify_file(
    path: Path,
    checkpoint: Checkpoint,
    public_key: Ed25519PublicKey,
    chain_keys: dict[str, bytes] | None = None,
    *,
    workers: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> Report:
    """`verify` the export in the file at `path`; with `workers` > 1, ranges of about `chunk_bytes` are
    read and digested by that many worker processes (the HMAC links and leaf hashes of a range are checks
    of their own), this process joining them in order (bulk.py)."""
    if workers <= 1 or path.stat().st_size <= chunk_bytes:  # one range: no processes to start
        with open(path) as whole:
            return verify(whole, checkpoint, public_key, chain_keys)
    report, check = _started(checkpoint, public_key, chain_keys)
    number = 1
    for where, digest in bulk.digested(path, checkpoint.log_id, chain_keys, workers, chunk_bytes):
        if digest is not None and check.joins(digest):
            number += len(digest.hashed)
            continue
        lines = bulk.read_lines(path, where)
        check.take(number, lines, None)
        number += len(lines)
    return _finished(report, check)


def _started(
    checkpoint: Checkpoint, public_key: Ed25519PublicKey, chain_keys: dict[str, bytes] | None
) -> tuple[Report, _Pass]:
    report = Report(checkpoint, chain_checked=chain_keys is not None)
    if not checkpoint.verifies(public_key):
        report.integrity.add("the outside checkpoint's signature does not verify with this public key")
    return report, _Pass(checkpoint, public_key, report.integrity, chain_keys)


def _finished(report: Report, check: _Pass) -> Report:
    """The verdicts the whole pass gives: the roots against the checkpoints, the counts."""
    integrity, completeness, checkpoint = report.integrity, report.completeness, report.checkpoint
    frontier, roots, stored, log_id = check.frontier, check.roots, check.stored, checkpoint.log_id
    report.entries = frontier.size
    _against(checkpoint, roots, integrity, "the outside checkpoint")
    if frontier.size < checkpoint.size:
        completeness.add(
            f"the checkpoint vouches for {checkpoint.size} entries, the ledger holds {frontier.size}:"
            " entries were truncated or deleted"
        )
    for each in stored:
        if each.log_id != log_id or not each.verifies(check.public_key):
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
        self,
        checkpoint: Checkpoint,
        public_key: Ed25519PublicKey,
        integrity: Verdict,
        chain_keys: dict[str, bytes] | None,
    ) -> None:
        self.public_key = public_key
        self.integrity = integrity
        self.chain_keys = chain_keys
        self.links = bulk.links_of(chain_keys)
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
        fields = (str(index).encode(), str(revision).encode(), key_id.encode(), entry)
        hashed = sha256(b"".join((self.leaf_prefix, *map(bulk.length_prefixed, fields)))).digest()
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

    def take(self, number: int, lines: list[str], digest: bulk.Digest | None) -> None:
        """Take a chunk of lines, the first numbered `number`: in bulk when its digest joins, else line by
        line."""
        if digest is None or not self.joins(digest):
            for offset, line in enumerate(lines, number):
                self.line(offset, line)

    def joins(self, digest: bulk.Digest) -> bool:
        """Take a chunk digested in bulk if it follows on from the entries before (its first index, revision
        and HMAC link): True; else change nothing and return False (the caller checks it line by line)."""
        frontier, hashed, macs = self.frontier, digest.hashed, digest.macs
        position = frontier.size
        if digest.first_index != position or digest.first_revision <= self.previous_revision:
            return False
        if self.links is not None:
            link = self.links.get(digest.first_key_id)
            if link is None or link(self.previous_mac, hashed[0]) != macs[0]:
                return False
        self.previous_mac, self.previous_revision = macs[-1], digest.last_revision
        at = 0
        for size in sorted(size for size in self.wanted if position < size <= position + len(hashed)):
            frontier.extend(hashed[at : size - position])
            at = size - position
            self.roots[size] = (frontier.root(), macs[at - 1])
        frontier.extend(hashed[at:])
        return True


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
