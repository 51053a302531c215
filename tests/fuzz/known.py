"""Defects the fuzz suite finds that are already tracked (issue #10), recognised case by case.

A case whose every problem one entry explains does not fail its test; the test ends as xfail naming the
item, so any other failure in the same test still fails it. When a fix merges its entry stops matching:
delete the entry then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.fuzz.target import Outcome


@dataclass(frozen=True)
class Known:
    item: str
    """The tracked item, as the xfail reason names it."""
    matches: Callable[[Outcome, list[str]], bool]
    """Whether it explains all of a case's problems (given the call's outcome)."""


def _only(problems: list[str], *allowed: str, required: str = "") -> bool:
    """Every problem contains one of `allowed`, and (if given) some problem contains `required`."""
    explained = all(any(part in problem for part in allowed) for problem in problems)
    return explained and (not required or any(required in problem for problem in problems))


KNOWN: tuple[Known, ...] = ()
"""None open: the undecodable requests, out-of-range Timestamps and unbounded echoes of #10 are fixed."""


def known_defect(outcome: Outcome, problems: list[str]) -> Known | None:
    """The tracked defect that explains every one of `problems`, if one does."""
    for known in KNOWN:
        if problems and known.matches(outcome, problems):
            return known
    return None
