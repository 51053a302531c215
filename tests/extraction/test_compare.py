"""Comparison of legacy and candidate answers: field diffs, redaction, Diffy's noise rule, counters."""

from __future__ import annotations

import random
import threading

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from microstate.client.extraction.compare import DEFAULT_RULES, Comparator, is_real
from microstate.client.extraction.diff import PRESENCE, CompareRules, canonical_bytes, differences
from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v2 import profile_pb2 as v2

PERSONAL = "Ada Lovelace"


def profile(**changes: object) -> v1.Profile:
    fields: dict[str, object] = {
        "user_id": "u-1",
        "display_name": PERSONAL,
        "locale": "en-GB",
        "attributes": {"city": "London", "plan": "pro"},
        "embedding": [0.25, 0.5, 0.75],
        "etag": "7",
        "create_time": Timestamp(seconds=1_700_000_000),
        "update_time": Timestamp(seconds=1_700_000_100),
    }
    fields.update(changes)
    return v1.Profile(**fields)  # type: ignore[arg-type]


def seen(
    comparator: Comparator,
    operation: str,
    legacy: v1.Profile | None,
    candidate: v1.Profile | None,
    seconds: tuple[float, float | None] = (0.001, 0.001),
    error: BaseException | None = None,
) -> None:
    """One shadowed pair, as the router reports it."""
    legacy_seconds, candidate_seconds = seconds
    comparator.observe(
        operation,
        legacy,
        candidate,
        legacy_seconds=legacy_seconds,
        candidate_seconds=candidate_seconds,
        candidate_error=error,
    )


def paths(legacy: object, candidate: object, rules: CompareRules = DEFAULT_RULES) -> list[str]:
    return [diff.path for diff in differences(legacy, candidate, rules)]  # type: ignore[arg-type]


def test_equal_messages_have_no_differences_and_ignored_fields_are_masks() -> None:
    assert paths(profile(), profile()) == []
    changed = profile(etag="8", update_time=Timestamp(seconds=5))
    assert paths(profile(), changed) == ["etag", "update_time"]
    rules = CompareRules.of(ignore=FieldMask(paths=["etag", "update_time"]))
    assert paths(profile(), changed, rules) == []
    assert canonical_bytes(profile(), rules) == canonical_bytes(changed, rules)


def test_floats_match_within_tolerance_only() -> None:
    close = profile(embedding=[0.25, 0.5 + 1e-9, 0.75])
    assert paths(profile(), close) == []
    far = profile(embedding=[0.25, 0.51, 0.75])
    assert paths(profile(), far) == ["embedding"]
    assert paths(profile(), far, CompareRules.of(float_tolerance=0.1)) == []
    assert paths(profile(), profile(embedding=[0.25, 0.5])) == ["embedding"]  # length differs


def test_repeated_fields_are_ordered_unless_declared_unordered() -> None:
    def with_consents(*purposes: str) -> v2.Profile:
        return v2.Profile(user_id="u", consents=[v2.Consent(purpose=p, granted=True) for p in purposes])

    ordered, swapped = with_consents("ads", "mail"), with_consents("mail", "ads")
    assert paths(ordered, swapped) == ["consents.purpose"]
    rules = CompareRules.of(unordered=["consents"])
    assert paths(ordered, swapped, rules) == []
    assert canonical_bytes(ordered, rules) == canonical_bytes(swapped, rules)
    assert paths(ordered, with_consents("ads", "post"), rules) == ["consents.purpose"]


def test_nested_messages_enums_and_presence() -> None:
    light = v2.Profile(user_id="u", preferences=v2.Preferences(theme=v2.THEME_LIGHT))
    dark = v2.Profile(user_id="u", preferences=v2.Preferences(theme=v2.THEME_DARK))
    [diff] = differences(light, dark, CompareRules())
    assert (diff.path, diff.legacy, diff.candidate) == ("preferences.theme", "THEME_LIGHT", "THEME_DARK")
    assert paths(light, v2.Profile(user_id="u")) == ["preferences"]
    assert paths(light, None) == [PRESENCE]
    assert paths(None, None) == []
    with pytest.raises(TypeError):
        differences(light, profile(), CompareRules())


def test_maps_compare_by_key_and_differences_never_show_personal_data() -> None:
    moved = profile(attributes={"city": "Paris", "plan": "pro"}, display_name="Ada King")
    found = differences(profile(), moved, CompareRules())
    assert [diff.path for diff in found] == ["display_name", "attributes"]
    shown = repr(found)
    for secret in (PERSONAL, "Ada King", "London", "Paris", "city"):
        assert secret not in shown
    assert paths(profile(), profile(attributes={"city": "London"})) == ["attributes"]
    revealed = differences(profile(), moved, CompareRules.of(reveal=["display_name"]))
    assert PERSONAL in revealed[0].legacy and "Ada King" in revealed[0].candidate


def test_a_random_timestamp_field_reports_only_that_field_as_noise() -> None:
    """Issue #17's figure: candidate identical to legacy but for a timestamp made per answer."""
    rules = CompareRules.of(ignore=["etag"])
    comparator = Comparator({"GetProfile": rules})
    rng = random.Random(17)

    def answer(n: int) -> v1.Profile:
        return profile(user_id=f"u-{n}", update_time=Timestamp(seconds=rng.randrange(10**9)))

    for n in range(1000):
        seen(comparator, "GetProfile", answer(n), answer(n), (0.001, 0.002))
        if n % 10 == 0:  # legacy against itself on a 10% sample
            comparator.observe_noise("GetProfile", answer(n), answer(n))
    stats = comparator.stats()
    assert [(v.path, v.real) for v in stats.fields] == [("update_time", False)]
    assert stats.mismatches() == []
    assert stats.noise()[0].rate == pytest.approx(1.0, abs=0.01)


def test_a_real_bug_stands_out_above_the_noise() -> None:
    comparator = Comparator(default_rules=CompareRules.of(ignore=["etag"]), phase_of=lambda op: "canary")
    for n in range(1000):
        stamp = Timestamp(seconds=n)
        legacy = profile(update_time=stamp)
        wrong = n % 20 == 0  # the candidate loses the locale 5% of the time
        candidate = profile(update_time=Timestamp(seconds=n + 1), locale="" if wrong else "en-GB")
        seen(comparator, "Get", legacy, candidate, (0.001, 0.5))
        comparator.observe_noise("Get", legacy, profile(update_time=Timestamp(seconds=n + 2)))
    stats = comparator.stats()
    verdicts = {v.path: v for v in stats.fields}
    assert verdicts["locale"].real and verdicts["locale"].phase == "canary"
    assert verdicts["locale"].diffs == 50 and verdicts["locale"].noise_diffs == 0
    assert not verdicts["update_time"].real
    assert [v.path for v in stats.mismatches()] == ["locale"]
    [operation] = stats.operations
    assert (operation.compared, operation.differing) == (1000, 1000)
    assert operation.legacy_p99 < 0.01 < 0.3 < operation.candidate_p50


def test_without_noise_samples_every_frequent_difference_is_real() -> None:
    comparator = Comparator()
    seen(comparator, "Get", profile(), profile(locale="fr"), (0.0, 0.0))
    assert [(v.path, v.real) for v in comparator.stats().fields] == [("locale", True)]


def test_diffys_rule() -> None:
    assert not is_real(0, 100, 0, 100)
    assert is_real(10, 100, 0, 100)
    assert not is_real(10, 100, 10, 100)  # as often as legacy against itself
    assert not is_real(11, 100, 10, 100)  # within 20% of it
    assert is_real(20, 100, 10, 100)
    assert not is_real(1, 1_000_000, 0, 100)  # 0.0001% of calls: under the 0.03% floor


def test_candidate_errors_are_counted_not_compared_and_samples_are_redacted() -> None:
    comparator = Comparator(samples=3, digest_key=b"k")
    for _ in range(5):
        seen(comparator, "Get", profile(), None, (0.001, None), TimeoutError())
        seen(comparator, "Get", profile(), profile(display_name="Grace Hopper"))
    stats = comparator.stats()
    [operation] = stats.operations
    assert operation.candidate_errors == {"TimeoutError": 5}
    assert (operation.compared, operation.differing) == (5, 5)
    assert len(stats.samples) == 3
    sample = stats.samples[0]
    assert sample.legacy_digest == comparator.digest(profile(), "Get") != sample.candidate_digest
    assert [diff.path for diff in sample.diffs] == ["display_name"]
    assert PERSONAL not in repr(stats) and "Grace" not in repr(stats)


def test_counts_are_exact_across_threads() -> None:
    comparator = Comparator()

    def observe() -> None:
        for _ in range(500):
            seen(comparator, "Get", profile(), profile(locale="x"), (0, 0))

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [verdict] = comparator.stats().fields
    assert (verdict.diffs, verdict.compared) == (2000, 2000)
