"""The verifier's own HMAC (keyed once, copied per link) is HMAC-SHA256 for every key length."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from microstate.server.audit.verify import _Link


@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 200])
def test_the_verifiers_link_is_hmac_sha256(length: int) -> None:
    key, previous, hashed = bytes(range(length % 256)) * (length // 256 + 1), b"p" * 32, b"h" * 32
    key = key[:length]
    assert _Link(key)(previous, hashed) == hmac.digest(key, previous + hashed, hashlib.sha256)
