"""RFC 6962 trees: roots match the recursive definition, every inclusion and consistency proof verifies and a
wrong one does not; an inclusion proof is at most 32·⌈log2 n⌉ bytes, a consistency proof at most one hash
more (RFC 9162's algorithm needs ⌈log2 n⌉ + 1 hashes for some sizes, e.g. 3 → 8: 4 hashes), and at most
32·⌈log2 n⌉ when the old size is a power of two (what checkpoints every 2^k entries give)."""

from __future__ import annotations

import math

import pytest

from microstate.server.audit import merkle


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def reference_root(hashed: list[bytes]) -> bytes:
    if not hashed:
        return merkle.EMPTY_ROOT
    if len(hashed) == 1:
        return hashed[0]
    k = 1 << ((len(hashed) - 1).bit_length() - 1)
    return merkle.node_hash(reference_root(hashed[:k]), reference_root(hashed[k:]))


def bound(n: int) -> int:
    return 32 * math.ceil(math.log2(n)) if n > 1 else 0


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100])
def test_the_frontier_root_is_the_rfc_6962_root(n: int) -> None:
    assert merkle.root(leaves(n)) == reference_root(leaves(n))


@pytest.mark.parametrize("start", [0, 1, 3, 4, 6, 8, 13])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 8, 19, 64])
def test_extending_a_frontier_in_bulk_equals_appending_each_leaf(start: int, count: int) -> None:
    one_by_one, bulk = merkle.Frontier(), merkle.Frontier()
    for hashed in leaves(start):
        one_by_one.append(hashed)
        bulk.append(hashed)
    for hashed in leaves(start + count)[start:]:
        one_by_one.append(hashed)
    bulk.extend(leaves(start + count)[start:])
    assert (bulk.size, bulk.hashes) == (one_by_one.size, one_by_one.hashes)
    assert bulk.root() == reference_root(leaves(start + count))


def test_the_root_of_a_known_tree_matches_rfc_6962_test_vectors() -> None:
    # The 8-leaf tree of certificate-transparency-go's merkle tests (inputs "", 00, 10, 2021, ...).
    inputs = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    hashed = [merkle.leaf_hash(bytes.fromhex(each)) for each in inputs]
    assert merkle.root(hashed).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 32, 45])
def test_every_inclusion_proof_verifies_is_short_and_binds_its_leaf(n: int) -> None:
    hashed = leaves(n)
    root = merkle.root(hashed)
    for index in range(n):
        proof = merkle.inclusion_proof(index, hashed)
        assert 32 * len(proof) <= bound(n)
        assert merkle.verify_inclusion(index, n, hashed[index], proof, root)
        assert not merkle.verify_inclusion(index, n, merkle.leaf_hash(b"forged"), proof, root)
        if n > 1:
            assert not merkle.verify_inclusion((index + 1) % n, n, hashed[index], proof, root)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 32, 45])
def test_every_consistency_proof_verifies_is_short_and_detects_a_rewritten_prefix(n: int) -> None:
    hashed = leaves(n)
    root = merkle.root(hashed)
    for old in range(1, n + 1):
        proof = merkle.consistency_proof(old, hashed)
        assert 32 * len(proof) <= bound(n) + (0 if old & (old - 1) == 0 else 32)
        old_root = merkle.root(hashed[:old])
        assert merkle.verify_consistency(old, n, old_root, root, proof)
        rewritten = [merkle.leaf_hash(b"rewritten"), *hashed[1:]]
        if old < n:
            assert not merkle.verify_consistency(old, n, merkle.root(rewritten[:old]), root, proof)
            assert not merkle.verify_consistency(old, n, old_root, merkle.root(rewritten), proof)


def test_proofs_in_a_large_tree_stay_within_32_bytes_per_level() -> None:
    n = 100_003
    hashed = leaves(n)
    root = merkle.root(hashed)
    for index in (0, 65_535, 65_536, n - 1):
        proof = merkle.inclusion_proof(index, hashed)
        assert 32 * len(proof) <= bound(n) and merkle.verify_inclusion(index, n, hashed[index], proof, root)
    proof = merkle.consistency_proof(65_536, hashed)
    assert 32 * len(proof) <= bound(n)
    assert merkle.verify_consistency(65_536, n, merkle.root(hashed[:65_536]), root, proof)
    proof = merkle.consistency_proof(70_000, hashed)
    assert 32 * len(proof) <= bound(n) + 32
    assert merkle.verify_consistency(70_000, n, merkle.root(hashed[:70_000]), root, proof)
