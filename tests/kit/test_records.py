"""A stored dataclass and its storage message map field by field by name; the rest is the slice's to give."""

from __future__ import annotations

from dataclasses import dataclass, field

from microstate.profile.storage.v1.record_pb2 import ProfileRecord
from microstate.server.kit import records


@dataclass(frozen=True)
class Slim:
    user_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    embedding_model: str = ""
    not_stored: int = 0
    note: str = ""


def test_shared_fields_are_copied_both_ways_and_special_ones_come_from_the_slice() -> None:
    value = Slim("u1", {"a": "b"}, "minilm", not_stored=7)
    message = records.to_message(value, ProfileRecord, display_name="given by the slice")
    assert message == ProfileRecord(
        user_id="u1", attributes={"a": "b"}, embedding_model="minilm", display_name="given by the slice"
    )
    back = records.from_message(message, Slim, note="from the slice")
    assert back == Slim("u1", {"a": "b"}, "minilm", note="from the slice")  # not_stored: the default
    assert isinstance(back.attributes, dict)
