"""The verifier's bulk path (audit/bulk.py), in this process and in worker processes reading ranges of the
export file, reports exactly what the line-by-line path does, on an honest export and on tampered ones; its
HMAC is HMAC-SHA256 for every key length. (The tamper suite, tests/audit/test_tamper.py, compares the two
paths on real ledgers.)"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microstate.server.audit import merkle
from microstate.server.audit import verify as verify_module
from microstate.server.audit.bulk import Link
from microstate.server.audit.checkpoints import Checkpoint
from microstate.server.audit.entries import Entry
from microstate.server.audit.ledger import ZERO_MAC, Sealed, leaf_of
from microstate.server.audit.verify import Report, verify, verify_file

COUNT = 300
SIGNING = Ed25519PrivateKey.generate()
KEYS = {"k1": b"1" * 32, "k2": b"2" * 40}


def export(count: int = COUNT) -> tuple[list[str], Checkpoint]:
    """An export of `count` entries chained with k1 then (a rotation) k2, its checkpoints (at 128 and at
    `count`) listed first, and the newest checkpoint."""
    lines, frontier, mac, middle = [], merkle.Frontier(), ZERO_MAC, None
    for index in range(count):
        entry = Entry(index, "anonymous", "/m/Put", "m.v1", f"k{index}", "put", "", "ab", "", "OK", "")
        key_id = "k1" if index < count // 2 else "k2"
        hashed = merkle.leaf_hash(leaf_of("log", index, 2 * index + 1, key_id, entry.encode()))
        mac = hmac.new(KEYS[key_id], mac + hashed, hashlib.sha256).digest()
        frontier.append(hashed)
        sealed = Sealed(index, 2 * index + 1, key_id, entry.encode(), mac)
        lines.append(json.dumps(sealed.to_json(), separators=(",", ":")))
        if frontier.size == 128:
            middle = Checkpoint("log", 128, frontier.root(), mac, 1).signed(SIGNING)
    assert middle is not None
    newest = Checkpoint("log", count, frontier.root(), mac, 2).signed(SIGNING)
    listed = [json.dumps({"checkpoint": json.loads(each.to_json())}) for each in (middle, newest)]
    return [*listed, *lines], newest


def reports(lines: list[str], checkpoint: Checkpoint, folder: Path) -> list[Report]:
    """The report of the line-by-line path (one chunk holding the checkpoint line), of the bulk path in this
    process, and of the file read and digested by two worker processes, in ranges of 4,000 bytes."""
    public, path = SIGNING.public_key(), folder / "ledger.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    with open(path) as read:
        lines = list(read)  # as a file gives them, newlines kept
    return [
        verify(lines, checkpoint, public, KEYS, chunk=len(lines)),
        verify(lines, checkpoint, public, KEYS, chunk=16),
        verify_file(path, checkpoint, public, KEYS, workers=2, chunk_bytes=4000),
    ]


def test_an_honest_export_verifies_on_every_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checked_one_by_one: list[int] = []
    line = verify_module._Pass.line

    def counted(self: verify_module._Pass, number: int, text: str) -> None:
        checked_one_by_one.append(number)
        line(self, number, text)

    monkeypatch.setattr(verify_module._Pass, "line", counted)
    line_by_line, in_process, in_workers = reports(*export(), tmp_path)
    for report in (line_by_line, in_process, in_workers):
        assert report.ok and report.entries == COUNT, report.lines()
    # the bulk paths took every chunk but the first (the one with the checkpoints)
    first_range = checked_one_by_one[COUNT + 2 + 16 :]
    assert checked_one_by_one == [*range(1, COUNT + 3), *range(1, 17), *range(1, len(first_range) + 1)]
    assert 2 < len(first_range) < COUNT // 10


def _edit_mac(lines: list[str]) -> list[str]:
    data = json.loads(lines[40])
    data["mac"] = "00" * 32
    return [*lines[:40], json.dumps(data, separators=(",", ":")), *lines[41:]]


TAMPERING: dict[str, Callable[[list[str]], list[str]]] = {
    "edit a mac": _edit_mac,
    "swap two lines": lambda lines: [*lines[:50], lines[51], lines[50], *lines[52:]],
    "delete a line": lambda lines: [*lines[:200], *lines[201:]],
    "duplicate a line": lambda lines: [*lines[:100], lines[100], *lines[100:]],
    "truncate": lambda lines: lines[:-20],
    "drop the first chunk boundary's entry": lambda lines: [*lines[:17], *lines[18:]],
    "garble a line": lambda lines: [*lines[:70], lines[70][:-5], *lines[71:]],
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_is_reported_alike_on_every_path(how: str, tmp_path: Path) -> None:
    lines, checkpoint = export()
    line_by_line, in_process, in_workers = reports(TAMPERING[how](lines), checkpoint, tmp_path)
    assert not line_by_line.ok
    assert in_process.lines() == line_by_line.lines() == in_workers.lines()


@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 200])
def test_the_verifiers_link_is_hmac_sha256(length: int) -> None:
    key, previous, hashed = bytes(index % 256 for index in range(length)), b"p" * 32, b"h" * 32
    assert Link(key)(previous, hashed) == hmac.digest(key, previous + hashed, hashlib.sha256)
