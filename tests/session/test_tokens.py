"""The token format and the server key: 256-bit secrets, a checksum that catches mangling, exact parsing,
and a key file only its owner can read."""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microstate.server.session.tokens import (
    REFRESH_TOKEN,
    SECRET_BYTES,
    SESSION_TOKEN,
    Credential,
    Malformed,
    ServerKey,
    _checksum,
    create_key_file,
    new_secret,
)

SESSION_ID = "0123456789abcdef" * 2


def test_a_token_carries_256_random_bits_and_parses_back() -> None:
    secret = new_secret()
    token = SESSION_TOKEN.issue(SESSION_ID, secret)

    assert len(secret) * 8 == SECRET_BYTES * 8 >= 256
    assert len(token) == SESSION_TOKEN.length == 85 and token.startswith("mss_")
    assert SESSION_TOKEN.parse(token) == Credential(SESSION_ID, secret)
    assert REFRESH_TOKEN.issue(SESSION_ID, secret).startswith("msr_")


def test_secrets_differ_every_time() -> None:
    assert len({new_secret() for _ in range(1000)}) == 1000


@given(position=st.integers(0, 84), replacement=st.sampled_from("0aZ_-.~ é"))
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    token = SESSION_TOKEN.issue(SESSION_ID, bytes(range(32)))
    mangled = token[:position] + replacement + token[position + 1 :]
    if mangled == token:
        return
    with pytest.raises(Malformed):
        SESSION_TOKEN.parse(mangled)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "mss_",
        "Bearer mss_" + "0" * 81,
        SESSION_TOKEN.issue(SESSION_ID, b"\x01" * 32) + "x",  # too long
        SESSION_TOKEN.issue(SESSION_ID, b"\x01" * 32)[:-1],  # truncated
        REFRESH_TOKEN.issue(SESSION_ID, b"\x01" * 32),  # the other kind
        SESSION_TOKEN.issue(SESSION_ID.upper(), b"\x01" * 32),  # hex must be lowercase
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Malformed):
        SESSION_TOKEN.parse(token)


def test_one_secret_has_one_spelling() -> None:
    """43 base64url characters hold 258 bits: a token whose 2 spare bits are set spells the same secret
    differently, and is refused even with a checksum that fits it."""
    token = SESSION_TOKEN.issue(SESSION_ID, b"\x00" * 32)
    body = token[:78] + "B"  # the secret's last character, with a spare bit set
    assert base64.urlsafe_b64decode(body[36:] + "=") == b"\x00" * 32

    with pytest.raises(Malformed, match="canonical"):
        SESSION_TOKEN.parse(body + _checksum(body))


def test_digests_depend_on_the_key_the_kind_and_the_session() -> None:
    key, other_key = ServerKey(secrets.token_bytes(32)), ServerKey(secrets.token_bytes(32))
    credential = Credential(SESSION_ID, new_secret())
    digest = key.digest(SESSION_TOKEN, credential)

    assert key.matches(SESSION_TOKEN, credential, digest)
    assert not other_key.matches(SESSION_TOKEN, credential, digest)
    assert not key.matches(REFRESH_TOKEN, credential, digest)
    assert not key.matches(SESSION_TOKEN, Credential("f" * 32, credential.secret), digest)
    assert credential.secret not in digest


def test_sealing_twice_gives_the_plaintext_back_and_only_with_the_same_context() -> None:
    key = ServerKey(secrets.token_bytes(32))
    plaintext = new_secret() + new_secret()
    sealed = key.seal(plaintext, b"successor", b"a")

    assert sealed != plaintext and len(sealed) == len(plaintext)
    assert key.seal(sealed, b"successor", b"a") == plaintext
    assert key.seal(sealed, b"successor", b"b") != plaintext


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ServerKey(b"k" * 31)


def test_the_key_file_is_made_once_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "session.key"

    assert create_key_file(path)
    first = path.read_bytes()
    assert not create_key_file(path)  # never overwritten: that would end every session
    assert path.read_bytes() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ServerKey.from_file(path).key_id == ServerKey(first.rstrip()).key_id


def test_a_final_newline_in_the_key_file_does_not_change_the_key(tmp_path: Path) -> None:
    material = secrets.token_hex(32).encode()
    (tmp_path / "a").write_bytes(material)
    (tmp_path / "b").write_bytes(material + b"\n")

    assert ServerKey.from_file(tmp_path / "a").key_id == ServerKey.from_file(tmp_path / "b").key_id
