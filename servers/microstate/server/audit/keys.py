"""The audit keys of a server: HMAC chain keys (with ids, rotated), the Ed25519 checkpoint signing key and
the subject key of `subject_ref`, kept as files in one directory (mode 0600).

- `chain-keys`: one "KEY_ID HEX" line per HMAC-SHA256 key, the last one current. Rotating = appending a
  line (`AuditKeys.rotate`): entries record the id of the key that chained them, so older entries still
  verify with older keys.
- `checkpoint.key`: the Ed25519 private key (PKCS#8 PEM); `checkpoint.pub` its public key, what an
  offline verifier needs (with the chain keys to check the HMAC chain too).
- `subject.key`: 32 random bytes, hex; deleting it unlinks every subject reference from its subject.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from microstate.server.audit.entries import subject_ref

CHAIN_KEYS = "chain-keys"
SIGNING_KEY = "checkpoint.key"
PUBLIC_KEY = "checkpoint.pub"
SUBJECT_KEY = "subject.key"


def _create(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create `path` holding `data`, whole or not at all: written beside it, then linked into place, so
    servers starting together (`microstate up`) never read a half-written key. FileExistsError if it
    exists (another process made it first: use that one)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.link(partial, path)
    finally:
        partial.unlink()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def read_chain_keys(path: Path) -> dict[str, bytes]:
    """{key id: key} in file order (the last is current)."""
    keys: dict[str, bytes] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key_id, _, hex_key = line.strip().partition(" ")
        if not key_id or not hex_key:
            raise ValueError(f"{path}:{number}: expected 'KEY_ID HEX'")
        keys[key_id] = bytes.fromhex(hex_key)
    if not keys:
        raise ValueError(f"{path} holds no chain key")
    return keys


@dataclass(frozen=True)
class AuditKeys:
    chain_keys: dict[str, bytes]
    """HMAC keys by id; the last is the one new entries are chained with."""
    signing_key: Ed25519PrivateKey
    subject_key: bytes

    @property
    def current_key_id(self) -> str:
        return next(reversed(self.chain_keys))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def subject_ref(self, subject_id: str) -> str:
        """entries.subject_ref under this server's subject key."""
        return subject_ref(subject_id, self.subject_key)

    @classmethod
    def load(cls, directory: Path) -> AuditKeys:
        """The keys in `directory`, made first if it holds none (FileExistsError-safe for racing starts)."""
        directory.mkdir(parents=True, exist_ok=True)
        makers: dict[str, Callable[[], bytes]] = {
            CHAIN_KEYS: lambda: f"k1 {secrets.token_hex(32)}\n".encode(),
            SIGNING_KEY: _new_signing_key,
            SUBJECT_KEY: lambda: secrets.token_hex(32).encode(),
        }
        for name, make in makers.items():
            with contextlib.suppress(FileExistsError):
                _create(directory / name, make())
        signing = serialization.load_pem_private_key((directory / SIGNING_KEY).read_bytes(), None)
        if not isinstance(signing, Ed25519PrivateKey):
            raise ValueError(f"{directory / SIGNING_KEY} is not an Ed25519 private key")
        with contextlib.suppress(FileExistsError):
            _create(directory / PUBLIC_KEY, public_key_pem(signing.public_key()), 0o644)
        return cls(
            chain_keys=read_chain_keys(directory / CHAIN_KEYS),
            signing_key=signing,
            subject_key=bytes.fromhex((directory / SUBJECT_KEY).read_text().strip()),
        )

    @staticmethod
    def rotate(directory: Path) -> str:
        """Append a new current chain key to `directory`'s chain keys; its id."""
        existing = read_chain_keys(directory / CHAIN_KEYS)
        key_id = f"k{len(existing) + 1}"
        with open(directory / CHAIN_KEYS, "a") as file:
            file.write(f"{key_id} {secrets.token_hex(32)}\n")
        return key_id


def _new_signing_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
