"""The impact report: exact fractions of the hash space, checked against an independent count and against
real subjects evaluated before and after the edit."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from microstate.client.flags.evaluation import compile_flag, evaluate
from microstate.flags.v1 import flags_pb2 as f
from microstate.server.flags.impact import SPACE, impact, reassigned_hashes

from .builders import rollout, split, string_flag

NAMES = ["a", "b", "c", "d"]


def flag_of(weights: list[int], *, bucket_by: str = "", salt: str | None = None) -> f.Flag:
    pairs = [(n, w) for n, w in zip(NAMES, weights, strict=False)]
    return string_flag("imp", NAMES, "a", [f.Rule(split=split(*pairs, bucket_by=bucket_by, salt=salt))])


def first_hash_at(bucket_index: int, total: int) -> int:
    """The least h with (h * total) >> 32 >= bucket_index, by binary search on the bucket function itself."""
    lo, hi = 0, SPACE
    while lo < hi:
        mid = (lo + hi) // 2
        if (mid * total) >> 32 >= bucket_index:
            hi = mid
        else:
            lo = mid + 1
    return lo


def independent_count(old: list[int], new: list[int]) -> int:
    """Reassigned hashes counted from the bucket function: every boundary found by search, then each
    elementary interval between boundaries checked by the variant of its first hash."""

    def owner_edges(weights: list[int]) -> list[tuple[int, str]]:
        total, running, edges = sum(weights), 0, []
        for name, weight in zip(NAMES, weights, strict=False):
            edges.append((first_hash_at(running, total), name))
            running += weight
        return edges

    def owner(edges: list[tuple[int, str]], h: int) -> str:
        return [name for start, name in edges if start <= h][-1]

    old_edges, new_edges = owner_edges(old), owner_edges(new)
    points = sorted({0, SPACE} | {s for s, _ in old_edges} | {s for s, _ in new_edges})
    return sum(
        end - start
        for start, end in itertools.pairwise(points)
        if end > start and owner(old_edges, start) != owner(new_edges, start)
    )


weights = st.lists(st.integers(0, 7), min_size=1, max_size=4).filter(lambda w: sum(w) > 0)


@settings(max_examples=300, deadline=None)
@given(weights, weights)
def test_exact_on_small_totals(old: list[int], new: list[int]) -> None:
    old_split, new_split = compile_flag(flag_of(old)).splits()[0], compile_flag(flag_of(new)).splits()[0]
    assert old_split is not None and new_split is not None
    moved = reassigned_hashes(old_split, new_split)
    assert moved == independent_count(old, new)


def test_known_fractions() -> None:
    quarter = [25, 25, 25, 25]
    assert impact(flag_of(quarter), flag_of(quarter)).max_reassigned_fraction == 0.0
    assert impact(flag_of(quarter), flag_of([50, 0, 25, 25])).max_reassigned_fraction == 0.25
    assert abs(impact(flag_of([10, 90]), flag_of([20, 80])).max_reassigned_fraction - 0.10) <= 2**-32
    # 1/2 1/2 -> 1/3 1/3 1/3: a keeps [0, 1/3), the sixth [1/3, 1/2) moves a -> b, [1/2, 2/3) stays b, the
    # last third moves b -> c: half the space, to within a hash.
    assert abs(impact(flag_of([1, 1]), flag_of([1, 1, 1])).max_reassigned_fraction - 0.5) <= 2**-32
    # Another bucketing key re-buckets everyone; so do rules added or removed.
    assert impact(flag_of(quarter), flag_of(quarter, salt="v2")).max_reassigned_fraction == 1.0
    assert impact(flag_of(quarter), flag_of(quarter, bucket_by="org")).max_reassigned_fraction == 1.0
    more = flag_of(quarter)
    more.rules.append(f.Rule(variant="b"))
    report = impact(flag_of(quarter), more)
    assert [(r.rule_index, r.reassigned_fraction) for r in report.rules] == [(0, 0.0), (1, 1.0)]
    # A gate does not move anyone between variants.
    gated = flag_of(quarter)
    gated.rules[0].rollout.CopyFrom(rollout(500, salt="gate"))
    assert impact(flag_of(quarter), gated).max_reassigned_fraction == 0.0


def test_matches_real_subjects() -> None:
    rng = random.Random(7)
    for _ in range(5):
        old = [rng.randrange(0, 1000) for _ in NAMES]
        new = [rng.randrange(0, 1000) for _ in NAMES]
        old[0] += 1
        new[0] += 1
        before, after = compile_flag(flag_of(old)), compile_flag(flag_of(new))
        keys = [f"user-{i}" for i in range(50_000)]
        moved = sum(evaluate(before, k, {}, 1).variant != evaluate(after, k, {}, 1).variant for k in keys)
        expected = impact(flag_of(old), flag_of(new)).max_reassigned_fraction
        assert abs(moved / len(keys) - expected) < 0.01, (old, new)
