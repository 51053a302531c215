"""Shared limit checks: each broken limit is INVALID_ARGUMENT naming the field, with the slice's numbers."""

from __future__ import annotations

import re

import pytest

from microstate.server.errors import InvalidArgument
from microstate.server.kit.limits import MapLimits, check_form, page_size_of

LIMITS = MapLimits(max_entries=2, max_key=3, max_value=4)


@pytest.mark.parametrize(
    ("entries", "field", "reason"),
    [
        ({"a": "", "b": "", "c": ""}, "labels", "LIMIT_EXCEEDED"),
        ({"": "x"}, "labels['']", "INVALID_ARGUMENT"),
        ({"abcd": "x"}, "labels['abcd']", "INVALID_ARGUMENT"),
        ({"a": "12345"}, "labels['a']", "LIMIT_EXCEEDED"),
    ],
)
def test_map_limits_name_the_entry_that_breaks_them(entries: dict[str, str], field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        LIMITS.check(entries, "labels")
    assert (caught.value.violations[0][0], caught.value.reason) == (field, reason)


def test_a_map_within_its_limits_passes() -> None:
    LIMITS.check({"abc": "1234", "d": ""}, "labels")


def test_page_sizes_follow_aip_158() -> None:
    assert [page_size_of(n, default=10, maximum=50) for n in (0, 1, 50, 51)] == [10, 1, 50, 50]
    with pytest.raises(InvalidArgument):
        page_size_of(-1, default=10, maximum=50)


def test_a_value_of_the_wrong_form_is_shown_cut_short() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_form("x" * 100, re.compile("[a-w]+"), "name", "letters a to w", reason="INVALID_NAME")
    assert caught.value.reason == "INVALID_NAME"
    assert caught.value.message == f"name: {'x' * 40 + '…'!r} is not valid: letters a to w"
