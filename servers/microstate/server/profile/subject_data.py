"""Where the profile microstate keeps a subject's data: the profile keyed by the subject's user id."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import json_format

from microstate.server.kit.subjects import Erased, Item, SubjectData, erase_records
from microstate.server.profile import v2
from microstate.server.profile.model import PROFILE
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores


class ProfileSubjects:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def export(self, subject: str) -> AsyncIterator[Item]:
        record = await self._store.get(subject)
        if record is not None:  # exported in the newest contract version's form
            message = v2.to_message(PROFILE.stored(record))
            yield Item(
                "profile", subject, json_format.MessageToDict(message, preserving_proto_field_name=True)
            )

    async def erase(self, subject: str) -> Erased:
        return Erased(await erase_records(self._store, [subject]))


def declaration(stores: Stores) -> SubjectData:
    return ProfileSubjects(stores.records())
