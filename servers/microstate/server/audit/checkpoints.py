"""Signed checkpoints: the anchor that makes truncation, deletion and a key holder's rewrite detectable.

A checkpoint states {log id, size, RFC 6962 root of the first `size` leaves, the HMAC chain head after
entry size-1, time}, signed with the server's Ed25519 key. The sealer writes each one to the ledger and to
places outside the store (an append-only file, the ledger's Watch feed that `microstate audit follow`
prints for a SIEM); a verifier keeps the newest one it has seen and checks the ledger against it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from microstate.server.audit.entries import encode_fields

_DOMAIN = "microstate-audit-checkpoint-v1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    log_id: str
    """The ledger's namespace (the microstate's store namespace)."""
    size: int
    root: bytes
    head: bytes
    """The chain MAC of entry size-1 (32 zero bytes for an empty ledger)."""
    time_ns: int
    signature: bytes = b""

    def message(self) -> bytes:
        return encode_fields([_DOMAIN, self.log_id, str(self.size), self.root, self.head, str(self.time_ns)])

    def signed(self, key: Ed25519PrivateKey) -> Checkpoint:
        return Checkpoint(
            self.log_id, self.size, self.root, self.head, self.time_ns, key.sign(self.message())
        )

    def verifies(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> str:
        return json.dumps(
            {
                "log_id": self.log_id,
                "size": self.size,
                "root": self.root.hex(),
                "head": self.head.hex(),
                "time_ns": self.time_ns,
                "signature": self.signature.hex(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        data = json.loads(text)
        return cls(
            log_id=str(data["log_id"]),
            size=int(data["size"]),
            root=bytes.fromhex(data["root"]),
            head=bytes.fromhex(data["head"]),
            time_ns=int(data["time_ns"]),
            signature=bytes.fromhex(data["signature"]),
        )


def append_to_file(path: Path, checkpoint: Checkpoint) -> None:
    """Append `checkpoint` as one JSON line to `path` and fsync: the copy kept outside the store."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (checkpoint.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_in_file(path: Path, log_id: str | None = None) -> Checkpoint | None:
    """The checkpoint of greatest size in a checkpoint file (of `log_id` if given); None if it has none.
    Lines that do not parse are skipped: a torn last line after a crash."""
    newest: Checkpoint | None = None
    for line in path.read_text().splitlines():
        try:
            checkpoint = Checkpoint.from_json(line)
        except (ValueError, KeyError, TypeError):
            continue
        if log_id is not None and checkpoint.log_id != log_id:
            continue
        if newest is None or checkpoint.size >= newest.size:
            newest = checkpoint
    return newest
