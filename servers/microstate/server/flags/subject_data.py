"""Where the feature-flags microstate keeps a subject's data: only in targeting rules whose conditions name
the subject (an allow list of user ids, say). They are exported, and kept on erase: a rule is configuration
an administrator owns and must edit (UpdateFlag) — erasing it silently would change who gets what."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import json_format

from microstate.flags.v1 import flags_pb2
from microstate.server.flags.model import FLAG
from microstate.server.kit.subjects import Erased, Item, SubjectData
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores

RETAINED = ("flag rule", "a targeting rule names the subject: an administrator must edit the flag")


def names(flag: flags_pb2.Flag, subject: str) -> bool:
    return any(
        value.string_value == subject
        for rule in flag.rules
        for condition in rule.conditions
        for value in condition.values
    )


class FlagSubjects:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _naming(self, subject: str) -> AsyncIterator[flags_pb2.Flag]:
        after: str | None = None
        while True:
            page = await self._store.list("", after=after, limit=500)
            for record in page.records:
                flag = FLAG.from_bytes(record.value)
                if names(flag, subject):
                    yield flag
            if page.next_after is None:
                return
            after = page.next_after

    async def export(self, subject: str) -> AsyncIterator[Item]:
        async for flag in self._naming(subject):
            yield Item("flag", flag.key, json_format.MessageToDict(flag, preserving_proto_field_name=True))

    async def erase(self, subject: str) -> Erased:
        async for _ in self._naming(subject):
            return Erased(0, (RETAINED,))
        return Erased(0)


def declaration(stores: Stores) -> SubjectData:
    return FlagSubjects(stores.records())
