"""A bounded map of the latest value per key, for the read-path caches."""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class LatestPerKey(Generic[V]):
    """The latest value stored per key, at most `max_entries` keys; a new key past the bound evicts the
    oldest inserted one. Callers validate what they get (the values carry what they were derived from)."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: dict[str, V] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        return self._entries.get(key)

    def put(self, key: str, value: V) -> None:
        if key not in self._entries and len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = value
