"""Request bodies no protobuf library writes: hand-made wire bytes for what the strategies cannot express.

Invalid UTF-8 is planted in a string field by appending a fragment to a well-formed body: protobuf parses
concatenated messages as one merged message, so `field(outer, field(inner, b"\\xff"))` sets (or, in a
repeated field, adds) the string at that path whatever else the body holds. Truncations, corrupt framing,
deep group nesting and random bytes cover the rest of what a decoder must refuse.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from microstate.server.kit.wire import field, varint
from tests.fuzz.strategies import MAX_DEPTH

INVALID_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",  # an overlong NUL
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"a\x80b",  # a stray continuation byte
    b"\xe2\x82",  # a sequence cut short
    b"ok\xf8\x88\x80\x80\x80",  # a five-byte form
)
LENGTH_WIDTH = 5
"""Bytes of the padding field's length varint."""
GROUP_DEPTHS = (64, 101, 1_000, 100_000)
CORRUPT = (
    b"\x0a\xff\xff\xff\xff\x0f",  # field 1, a length of 4 GiB with nothing after it
    b"\x0a\x05ab",  # a length longer than the body
    b"\x08" + b"\xff" * 11,  # a varint of eleven bytes
    b"\x0c",  # an end-group with no start
    b"\x0e",  # wire type 6 does not exist
    b"\x0f",  # nor 7
    b"\x00\x00",  # field number 0
    b"\xf8\xff\xff\xff\xff\x01\x00",  # a field number beyond 2^29
    b"\x0d\x00",  # a fixed32 cut short
)


def string_paths(descriptor: Descriptor, *, depth: int = MAX_DEPTH) -> list[tuple[int, ...]]:
    """Field-number paths from `descriptor` to every string field under it (map keys and values too)."""
    paths: list[tuple[int, ...]] = []

    def walk(message: Descriptor, prefix: tuple[int, ...]) -> None:
        for child in message.fields:
            here = (*prefix, child.number)
            if child.type == FieldDescriptor.TYPE_STRING:
                paths.append(here)
            elif child.message_type is not None and len(here) < depth:
                walk(child.message_type, here)

    walk(descriptor, ())
    return paths


def planted(path: tuple[int, ...], payload: bytes) -> bytes:
    """The wire fragment that sets the string at `path` to the raw bytes `payload`."""
    fragment = payload
    for number in reversed(path):
        fragment = field(number, fragment)
    return fragment


def deep_groups(depth: int) -> bytes:
    """`depth` nested start-groups of field 1, then their ends: a recursion-limit probe."""
    return b"\x0b" * depth + b"\x0c" * depth


def padded(body: bytes, size: int, number: int) -> bytes:
    """`body` with an unknown bytes field `number` appended so that the whole is exactly `size` bytes.

    The length is written as a five-byte varint (trailing 0x80 continuation bytes are valid protobuf), so
    the header has one size whatever the length and every total from `len(body) + header` up is exact.
    """
    tag = varint(number << 3 | 2)
    payload = size - len(body) - len(tag) - LENGTH_WIDTH
    if payload < 0:
        raise ValueError(f"{size} bytes cannot hold a {len(body)}-byte body and a padding field")
    return body + tag + _wide_varint(payload) + b"\0" * payload


def _wide_varint(value: int) -> bytes:
    out = bytearray()
    for _ in range(LENGTH_WIDTH - 1):
        out.append(value & 0x7F | 0x80)
        value >>= 7
    if value > 0x7F:
        raise ValueError("too long for the padding field")
    out.append(value)
    return bytes(out)


def unused_field_number(descriptor: Descriptor) -> int:
    """A field number `descriptor` does not declare (the largest allowed, or the one before it)."""
    largest = 2**29 - 1
    return largest if largest not in descriptor.fields_by_number else largest - 1


def undecodable(descriptor: Descriptor, bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Bodies a strict decoder of `descriptor` must refuse, or that sit on the edge of it.

    `bodies` draws well-formed bodies to plant bad strings in and to cut short.
    """
    choices = [
        st.binary(max_size=512),
        st.sampled_from(CORRUPT),
        st.builds(deep_groups, st.sampled_from(GROUP_DEPTHS)),
        st.builds(lambda body, cut: body[: int(len(body) * cut)], bodies, st.floats(0, 1, exclude_max=True)),
        st.builds(lambda body, bad: body + bad, bodies, st.sampled_from(CORRUPT)),
    ]
    paths = string_paths(descriptor)
    if paths:
        plant = st.builds(planted, st.sampled_from(paths), st.sampled_from(INVALID_UTF8))
        choices.append(st.builds(lambda body, fragment: body + fragment, bodies, plant))
        choices.append(st.builds(lambda fragment, body: fragment + body, plant, bodies))
    return st.one_of(choices)
