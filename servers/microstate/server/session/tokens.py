"""Session and refresh tokens: their format, and the only forms of them the store ever sees.

A token is 85 ASCII characters, `mss_` (session) or `msr_` (refresh), then the 32-hex-character session id,
then 256 random bits from `secrets` (43 base64url characters), then a base62 CRC32 of everything before it
(6 characters). The prefix lets leak scanners find tokens; the checksum lets the server refuse a mangled or
made-up token before it reads the store (GitHub's token format does both). The session id is not secret.

The store keeps an HMAC-SHA256 of each secret under the server key (`ServerKey`), which is never in the store,
and compares with `hmac.compare_digest`: a copy of the store yields no token and no way to check a guess. The
few copies of new secrets the store must keep for a while (to answer a retried create or a concurrent refresh
with the same tokens) are encrypted with keys derived from the server key and a value the store never holds.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import secrets
import zlib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_BYTES = 32
KEY_MIN_BYTES = 32
_SECRET_CHARS = 43  # base64url of 32 bytes, unpadded
_CHECKSUM_CHARS = 6  # base62 of a 32-bit CRC: 62**6 > 2**32
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Malformed(ValueError):
    """Not a token of the expected kind; `cause` says why (for the log, never for the caller)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Credential:
    """What a well-formed token carries."""

    session_id: str
    secret: bytes


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_CHARS)


@dataclass(frozen=True, slots=True)
class TokenKind:
    prefix: str
    """`mss_` or `msr_`."""
    purpose: bytes
    """Separates the digests of the two kinds, so one kind's secret never passes for the other's."""
    shape: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        body = rf"[0-9a-f]{{32}}[A-Za-z0-9_-]{{{_SECRET_CHARS}}}[0-9A-Za-z]{{{_CHECKSUM_CHARS}}}"
        object.__setattr__(self, "shape", re.compile(re.escape(self.prefix) + body))

    @property
    def length(self) -> int:
        return len(self.prefix) + 32 + _SECRET_CHARS + _CHECKSUM_CHARS

    def issue(self, session_id: str, secret: bytes) -> str:
        body = self.prefix + session_id + base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")
        return body + _checksum(body)

    def parse(self, token: str) -> Credential:
        """The credential in `token`; Malformed unless it has this kind's exact shape and checksum."""
        if len(token) != self.length or not self.shape.fullmatch(token):
            raise Malformed(f"not the shape of a {self.prefix}… token")
        body, checksum = token[:-_CHECKSUM_CHARS], token[-_CHECKSUM_CHARS:]
        if not hmac.compare_digest(_checksum(body), checksum):
            raise Malformed("wrong checksum")
        encoded = body[len(self.prefix) + 32 :]
        try:
            secret = base64.urlsafe_b64decode(encoded + "=")
        except binascii.Error:  # pragma: no cover - the shape admits only base64url characters
            raise Malformed("secret is not base64url") from None
        if base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=") != encoded:
            raise Malformed("secret is not canonical base64url")  # one token string per secret
        return Credential(body[len(self.prefix) : len(self.prefix) + 32], secret)


SESSION_TOKEN = TokenKind("mss_", b"session token")
REFRESH_TOKEN = TokenKind("msr_", b"refresh token")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def _framed(parts: tuple[bytes, ...]) -> bytes:
    # Length-prefixed, so no two different part lists give the same message.
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


class ServerKey:
    """The key the server holds outside the store: digests of secrets, and keys for the sealed copies."""

    def __init__(self, material: bytes) -> None:
        if len(material) < KEY_MIN_BYTES:
            raise ValueError(
                f"a session server key needs at least {KEY_MIN_BYTES} bytes, got {len(material)}"
            )
        self._material = material
        self.key_id = self.mac(b"key id")[:8]
        """Names the key in stored records (a digest of it, not the key), so a record made under another
        key is told apart in the log from a wrong secret."""

    def mac(self, *parts: bytes) -> bytes:
        return hmac.digest(self._material, _framed(parts), "sha256")

    def digest(self, kind: TokenKind, credential: Credential) -> bytes:
        """What the store keeps of a token's secret."""
        return self.mac(kind.purpose, credential.session_id.encode("ascii"), credential.secret)

    def matches(self, kind: TokenKind, credential: Credential, stored_digest: bytes) -> bool:
        return hmac.compare_digest(self.digest(kind, credential), stored_digest)

    def seal(self, plaintext: bytes, *context: bytes) -> bytes:
        """`plaintext` encrypted with a one-time keystream derived from this key and `context`. The same call
        decrypts. Callers use each context once and check what they decrypt against stored digests."""
        prk = self.mac(b"seal", *context)
        stream = b""
        block = b""
        counter = 1
        while len(stream) < len(plaintext):  # HKDF-Expand (RFC 5869) with SHA-256
            block = hmac.digest(prk, block + bytes([counter]), "sha256")
            stream += block
            counter += 1
        return bytes(a ^ b for a, b in zip(plaintext, stream, strict=False))

    @classmethod
    def from_file(cls, path: Path) -> ServerKey:
        """The key in `path`: its bytes, trailing whitespace dropped (so `openssl rand -hex 32 > file` and an
        editor's final newline both work). OSError if unreadable, ValueError if too short."""
        material = path.read_bytes().rstrip()
        mode = path.stat().st_mode
        if mode & 0o077:
            log.warning(
                "the session key file can be read by other users; chmod 600 it",
                extra={"path": str(path), "mode": oct(mode & 0o777)},
            )
        return cls(material)


def create_key_file(path: Path) -> bool:
    """Write a new random key (64 hex characters) to `path` with mode 0600, unless the file exists; True if
    it was created. Safe against a concurrent creator: the file is created exclusively."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(KEY_MIN_BYTES) + "\n")
    return True
