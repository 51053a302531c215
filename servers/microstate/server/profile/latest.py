"""A bounded map of the latest value per key, for the read-path caches."""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")


class LatestPerKey(dict[str, V]):
    """The latest value stored per key, at most `max_entries` keys; a new key past the bound evicts the
    oldest inserted one. Callers validate what they get (the values carry what they were derived from).
    A dict itself, so the per-key lookup on the read path is dict.get, in C; write through `put` only."""

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self._max_entries = max_entries

    def put(self, key: str, value: V) -> None:
        if key not in self and len(self) >= self._max_entries:
            del self[next(iter(self))]
        self[key] = value
