"""Where the telemetry microstate keeps a subject's data: raw events whose subject is the subject, in the
batches of the log role, under the subject's pseudonym (pseudonyms.py). Rollups never hold a subject id.

Erase is crypto-shredding: the subject's key goes, and with it any link from the raw events to the subject;
the events themselves stay, pseudonymous, until the raw TTL (MICROSTATE_TELEMETRY_RAW_TTL) trims them.
Why not delete them: the log is append-only (pseudonyms.py says why it stays so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import json_format

from microstate.server.kit.subjects import Erased, Item, SubjectData
from microstate.server.store.log import LogStore
from microstate.server.store.roles import Stores
from microstate.server.telemetry.pseudonyms import Pseudonyms, pseudonyms_of
from microstate.telemetry.v1 import telemetry_pb2 as pb

PAGE = 500


class TelemetrySubjects:
    def __init__(self, log: LogStore, pseudonyms: Pseudonyms) -> None:
        self._log = log
        self._pseudonyms = pseudonyms

    async def export(self, subject: str) -> AsyncIterator[Item]:
        pseudonym = await self._pseudonyms.existing(subject)
        if pseudonym is None:
            return
        after: str | None = None
        while True:
            page = await self._log.read(after, limit=PAGE)
            for entry in page.entries:
                batch = pb.RecordEventsRequest.FromString(entry.data)
                for index, event in enumerate(batch.events):
                    if event.subject_id == pseudonym:
                        event.subject_id = subject
                        data = json_format.MessageToDict(event, preserving_proto_field_name=True)
                        yield Item("event", f"{entry.position}/{index}", data)
            if not page.more:
                return
            after = page.cursor

    async def erase(self, subject: str) -> Erased:
        return Erased(await self._pseudonyms.erase(subject))


def declaration(stores: Stores) -> SubjectData:
    return TelemetrySubjects(stores.log("log"), pseudonyms_of(stores.records()))
