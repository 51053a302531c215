"""Bounded caches for the read path: the latest value per key, and decoded records reused while unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from microstate.server.store.base import Record

V = TypeVar("V")
T = TypeVar("T")


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


class DecodedRecords(Generic[T]):
    """The last decode of each key's record, reused while the stored bytes are unchanged, so hot reads skip
    decoding. The check is on the bytes themselves (a memcmp), not only the revision, so a store that was
    wiped and refilled can never serve an old decode. Bounded: the oldest insertion goes first.
    The decoded values are shared between reads: they must be immutable."""

    def __init__(self, decode: Callable[[Record], T], max_entries: int = 10_000) -> None:
        self._decode = decode
        self._entries: LatestPerKey[tuple[int, bytes, T]] = LatestPerKey(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def decode(self, record: Record) -> T:
        hit = self._entries.get(record.key)
        if hit is not None and hit[0] == record.revision and hit[1] == record.value:
            return hit[2]
        value = self._decode(record)
        self._entries.put(record.key, (record.revision, record.value, value))
        return value
