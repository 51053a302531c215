"""murmur3_32: the pure-Python fallback equals mmh3 on every input, and flagd's vectors hold."""

from __future__ import annotations

import mmh3
from hypothesis import given, settings
from hypothesis import strategies as st

from microstate.client.flags import _murmur
from microstate.client.flags._murmur import murmur3_32, murmur3_32_pure


def reference(data: bytes) -> int:
    return mmh3.hash(data, 0, signed=False)


def test_known_values() -> None:
    assert murmur3_32_pure(b"hello") == 0x248BFA47
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32_pure(b"") == 0
    assert murmur3_32_pure(b"headerColorrachel@faas.com") == 1805633606


def test_server_side_uses_mmh3() -> None:
    assert _murmur.HAVE_MMH3 and murmur3_32 is not murmur3_32_pure


def test_every_tail_length() -> None:
    base = bytes(range(256)) * 2
    for length in range(len(base)):
        assert murmur3_32_pure(base[:length]) == reference(base[:length]), length


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=7) | st.binary(max_size=200))
def test_bytes_agree_with_mmh3(data: bytes) -> None:
    assert murmur3_32_pure(data) == reference(data)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=40))
def test_utf8_text_agrees_with_mmh3(text: str) -> None:
    data = text.encode()
    assert murmur3_32_pure(data) == reference(data)
