"""Where the session microstate keeps a subject's data: the sessions of the user, its index entries and its
revocation marks. Erasing deletes them all, which revokes the sessions (WatchRevocations streams an ERASED
revocation per session, so validators drop what they cached)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from microstate.server.kit.subjects import Erased, Item, SubjectData, erase_records, keys_with_prefix
from microstate.server.session.model import (
    MARKS,
    SESSION,
    SessionData,
    index_prefix,
    is_session_key,
    marks_key,
    user_tag,
)
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores
from microstate.server.wellknown import timestamp


def _time(ns: int) -> str | None:
    return timestamp(ns).ToJsonString() if ns else None


def _exported(data: SessionData) -> dict[str, Any]:
    """What the subject may see of a session: not the digests of its secrets, which name nothing."""
    return {
        "session_id": data.session_id,
        "user_id": data.user_id,
        "scopes": list(data.scopes),
        "attributes": dict(data.attributes),
        "create_time": _time(data.create_time_ns),
        "refresh_time": _time(data.refresh_time_ns),
        "expire_time": _time(data.expire_time_ns),
        "revoke_time": _time(data.revoke_time_ns),
        "revoke_reason": data.revoke_reason.name,
        "refresh_count": data.generation,
    }


class SessionSubjects:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _sessions(self, subject: str) -> list[SessionData]:
        """Every stored session of `subject`, listed or not: its ids start with the user's tag (model.py)."""
        found: list[SessionData] = []
        for key in await keys_with_prefix(self._store, user_tag(subject)):
            record = await self._store.get(key)
            if record is not None and is_session_key(key):
                data = SESSION.from_bytes(record.value)
                if data.user_id == subject:  # two users may share a tag
                    found.append(data)
        return found

    async def export(self, subject: str) -> AsyncIterator[Item]:
        for data in await self._sessions(subject):
            yield Item("session", data.session_id, _exported(data))

    async def erase(self, subject: str) -> Erased:
        sessions = [data.session_id for data in await self._sessions(subject)]
        index = await keys_with_prefix(self._store, index_prefix(subject))
        erased = await erase_records(self._store, sessions)  # announced: validators drop them
        erased += await erase_records(self._store, index, announced=False)  # keys naming the user
        return Erased(erased + await self._erase_mark(subject))

    async def _erase_mark(self, subject: str) -> int:
        key = marks_key(user_tag(subject))
        record = await self._store.get(key)
        if record is None:
            return 0
        marks = MARKS.from_bytes(record.value)
        if subject not in marks.by_user:
            return 0
        others = {user: mark for user, mark in marks.by_user.items() if user != subject}
        if not others:
            return await erase_records(self._store, [key], announced=False)
        # Another user shares the tag: keep its mark, in a record that no longer names the subject.
        last = marks.last_user_id if marks.last_user_id != subject else next(iter(others))
        await self._store.put(key, type(marks)(others, last).to_bytes(), if_match=record.revision)
        return 1


def declaration(stores: Stores) -> SubjectData:
    return SessionSubjects(stores.records())
