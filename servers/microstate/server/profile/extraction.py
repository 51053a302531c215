"""The profile slice's declaration for `microstate reconcile profile` (kit/extraction.py).

The command reads the store directly (see reconcile.py); the binding says how a stored record reads as the
message the SDK and the legacy adapters speak, profile v1's `Profile`, and how a repair writes one back: the
v1 fields replace the stored ones, everything else (v2's names and consents, the request ids applied)
stays. The legacy side defaults to the demo monolith's `users` table (client/extraction/demo.py).
"""

from __future__ import annotations

import array
import time
from dataclasses import replace

from google.protobuf.message import Message

from microstate.profile.v1 import profile_pb2 as pb
from microstate.server.kit.extraction import Reconcilable
from microstate.server.profile import v1
from microstate.server.profile.model import PROFILE, ProfileData
from microstate.server.store.base import Record

WRITTEN_BY = "microstate.reconcile"
"""Who the stored record says wrote it last (ProfileData.written_by): a repair, not a contract version."""


class ProfileBinding:
    def to_message(self, record: Record) -> Message:
        return v1.to_message(PROFILE.stored(record))

    def to_bytes(self, key: str, message: Message, current: Record | None) -> bytes:
        if not isinstance(message, pb.Profile):
            raise TypeError(f"a profile repair needs a microstate.profile.v1.Profile, not {type(message)}")
        now = time.time_ns()
        data = (
            ProfileData(user_id=key, create_time_ns=now)
            if current is None
            else PROFILE.from_bytes(current.value)
        )
        embedding = array.array("f", message.embedding)
        if embedding != data.embedding:
            data = replace(data, embedding=embedding, embedding_model="", embedding_model_version="")
        repaired = replace(
            data,
            display_name=message.display_name,
            locale=message.locale,
            attributes=dict(message.attributes),
            update_time_ns=now,
            written_by=WRITTEN_BY,
        )
        return repaired.to_bytes()


BINDING = ProfileBinding()
RECONCILABLE = Reconcilable(BINDING, "microstate.client.extraction.demo:UsersCodec", "users", "users:")
