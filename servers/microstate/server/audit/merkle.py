"""RFC 6962 / RFC 9162 Merkle trees over ledger leaves: roots, an incremental frontier, inclusion and
consistency proofs and their verifiers.

Leaf hash `SHA-256(0x00 ‖ leaf)`, interior node `SHA-256(0x01 ‖ left ‖ right)` (domain separation: a leaf
can never pass for a node); a tree over n leaves splits at the largest power of two below n. A proof is a
list of ⌈log2 n⌉ hashes at most, so 32·⌈log2 n⌉ bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from hashlib import sha256

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree of no leaves (RFC 6962 2.1)."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The roots of the perfect subtrees a tree of `size` leaves decomposes into, largest first: enough to
    append a leaf and to compute the root in O(log n), so a sealer never rereads the ledger."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(
                f"a frontier of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)

    def append(self, hashed_leaf: bytes) -> None:
        node = hashed_leaf
        size = self.size
        while size & 1:  # merge with each perfect subtree of the same height
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
        self.hashes.append(node)
        self.size += 1

    def extend(self, hashed_leaves: Sequence[bytes]) -> None:
        """`append` each leaf, in bulk: each aligned run of 2^k leaves is reduced to its subtree root a
        level at a time (a list comprehension per level, no call per node), then merged like one leaf."""
        at, count = 0, len(hashed_leaves)
        while at < count:
            aligned = self.size & -self.size or 1 << 62  # the largest subtree the size is a multiple of
            width = min(aligned, 1 << ((count - at).bit_length() - 1))
            level = hashed_leaves[at : at + width]
            while len(level) > 1:
                pairs = iter(level)
                level = [
                    sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=True)
                ]
            node, units = level[0], self.size // width
            while units & 1:  # merge with each perfect subtree of the same height, as append does
                node = node_hash(self.hashes.pop(), node)
                units >>= 1
            self.hashes.append(node)
            self.size += width
            at += width

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node


def root(hashed_leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of these leaf hashes."""
    frontier = Frontier()
    for hashed in hashed_leaves:
        frontier.append(hashed)
    return frontier.root()


def inclusion_proof(index: int, hashed_leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `hashed_leaves` (RFC 6962 2.1.1)."""
    n = len(hashed_leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, hashed_leaves[:k]), root(hashed_leaves[k:])]
    return [*inclusion_proof(index - k, hashed_leaves[k:]), root(hashed_leaves[:k])]


def consistency_proof(old_size: int, hashed_leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first `old_size` leaves is a prefix of the tree of all of them."""
    n = len(hashed_leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to {n}")
    return _subproof(old_size, hashed_leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_inclusion(
    index: int, size: int, hashed_leaf: bytes, proof: Sequence[bytes], expected: bytes
) -> bool:
    """RFC 9162 2.1.3.2: whether `proof` puts leaf `index` in the tree of `size` leaves with root
    `expected`."""
    if not 0 <= index < size:
        return False
    fn, sn, node = index, size - 1, hashed_leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == expected


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether `proof` shows the tree (`old_size`, `old_root`) is a prefix of
    (`new_size`, `new_root`)."""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is itself a node of the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(node, first)
            second = node_hash(node, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, node)
        fn >>= 1
        sn >>= 1
    return first == old_root and second == new_root and sn == 0
