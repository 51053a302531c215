"""Where the telemetry microstate keeps a subject's data: raw events naming it (`subject_id`) in the batches
of the log role. Rollups never hold a subject id (the contract says so).

The log is append-only and each entry is a batch of many subjects' events, so erase does not rewrite it:
the subject's raw events are reported as retained until the raw TTL (MICROSTATE_TELEMETRY_RAW_TTL, a day by
default) trims them — Art. 17 asks for erasure "without undue delay", and the TTL bounds the delay. Crypto-
shredding (subject ids sealed under a per-subject key that erase deletes) would end it at once; it is not
built yet (README, GDPR).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format

from microstate.server.kit.subjects import Erased, Item, SubjectData
from microstate.server.store.roles import Stores
from microstate.telemetry.v1 import telemetry_pb2 as pb

RETAINED = ("raw event", "append-only raw log: trimmed within MICROSTATE_TELEMETRY_RAW_TTL")
PAGE = 500


class TelemetrySubjects:
    def __init__(self, log: Any) -> None:
        self._log = log

    async def _events(self, subject: str) -> AsyncIterator[tuple[str, pb.Event]]:
        after: str | None = None
        while True:
            page = await self._log.read(after, limit=PAGE)
            for entry in page.entries:
                batch = pb.RecordEventsRequest.FromString(entry.data)
                for index, event in enumerate(batch.events):
                    if event.subject_id == subject:
                        yield f"{entry.position}/{index}", event
            if not page.more:
                return
            after = page.cursor

    async def export(self, subject: str) -> AsyncIterator[Item]:
        async for key, event in self._events(subject):
            yield Item("event", key, json_format.MessageToDict(event, preserving_proto_field_name=True))

    async def erase(self, subject: str) -> Erased:
        async for _ in self._events(subject):
            return Erased(0, (RETAINED,))
        return Erased(0)


def declaration(stores: Stores) -> SubjectData:
    return TelemetrySubjects(stores.log("log"))
