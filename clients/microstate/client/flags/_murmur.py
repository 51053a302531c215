"""murmur3 x86 32-bit, seed 0, unsigned: the hash flagd's fractional buckets on.

`murmur3_32` is the `mmh3` C extension when it is installed (the server always has it; the SDK has it with
the `fast` extra) and the exact pure-Python `murmur3_32_pure` otherwise; both give the same number for every
input, so a replica without `mmh3` buckets every subject exactly as the server does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def murmur3_32_pure(data: bytes) -> int:
    """murmur3_x86_32(data, seed=0) as an unsigned 32-bit integer, in pure Python."""
    length = len(data)
    nblocks = length >> 2
    h = 0
    for k in struct.unpack_from(f"<{nblocks}I", data):
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = nblocks << 2
    rest = length & 3
    if rest:
        k = data[tail]
        if rest > 1:
            k ^= data[tail + 1] << 8
        if rest > 2:
            k ^= data[tail + 2] << 16
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
    h ^= length
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def _mmh3() -> Callable[[bytes], int] | None:
    try:
        import mmh3
    except ImportError:
        return None
    hash32 = mmh3.hash

    def murmur3_32_mmh3(data: bytes) -> int:
        return hash32(data, 0, signed=False)

    return murmur3_32_mmh3


_FAST = _mmh3()
#: True when `murmur3_32` is the `mmh3` C extension.
HAVE_MMH3 = _FAST is not None
murmur3_32: Callable[[bytes], int] = _FAST if _FAST is not None else murmur3_32_pure
