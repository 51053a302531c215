"""DomainError.to_status bounds every string it sends and the status as a whole, whatever domain code put in
it: statuses travel as trailing metadata, which clients cap at 8 KiB by default."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from microstate.server.errors import (
    MAX_STATUS_BYTES,
    MAX_STRING_BYTES,
    DomainError,
    EtagMismatch,
    InvalidArgument,
    bounded,
)

HUGE = "x" * 16_000


def sent(error: DomainError) -> tuple[status_pb2.Status, list[Message]]:
    """The google.rpc.Status `error` becomes, as it goes out, and its unpacked details."""
    status = error.to_status()
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    proto = status_pb2.Status.FromString(value)
    assert status.details == proto.message
    unpacked: list[Message] = []
    for detail in proto.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked.append(message)
    return proto, unpacked


def strings(message: Message) -> list[str]:
    """Every string in `message`, at any depth, map values included."""
    found: list[str] = []
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            found += list(value.values())
        elif field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                found += strings(item)
        elif isinstance(value, str):
            found.append(value)
        elif field.is_repeated and all(isinstance(item, str) for item in value):
            found += list(value)
    return found


def assert_bounded(proto: status_pb2.Status, details: list[Message]) -> None:
    assert proto.ByteSize() <= MAX_STATUS_BYTES
    for text in [proto.message, *(s for detail in details for s in strings(detail))]:
        assert len(text.encode()) <= MAX_STRING_BYTES


@pytest.mark.parametrize(
    "error",
    [
        DomainError(HUGE, metadata={"user_id": HUGE, "other": "short"}),
        InvalidArgument(HUGE, HUGE),
        EtagMismatch(f"profiles/{HUGE}", HUGE, HUGE),
    ],
    ids=["message-and-metadata", "field-violation", "etag-mismatch"],
)
def test_every_echoed_string_is_bounded(error: DomainError) -> None:
    proto, details = sent(error)
    assert_bounded(proto, details)
    assert len(details) == 1 + len(error.details())  # bounded, not dropped
    info = details[0]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == error.reason


def test_many_bounded_strings_shed_details_but_keep_the_error_info() -> None:
    many = InvalidArgument("user_ids", "too many")
    many.violations = [(f"user_ids[{i}]", HUGE) for i in range(100)]
    many.metadata = {f"key{i}": HUGE for i in range(20)}
    proto, details = sent(many)
    assert_bounded(proto, details)
    (info,) = details
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "microstate.dev")
    assert proto.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_a_long_list_of_violations_keeps_its_first_ones() -> None:
    many = InvalidArgument.of(
        [(f"flag.rules[{i}].variant", "'x' is not a variant of the flag") for i in range(200)]
    )
    proto, details = sent(many)
    assert_bounded(proto, details)
    _, bad = details
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert 10 < len(bad.field_violations) < 200
    assert [v.field for v in bad.field_violations[:2]] == ["flag.rules[0].variant", "flag.rules[1].variant"]
    assert proto.message.startswith("200 invalid fields; flag.rules[0].variant: ")


def test_short_strings_are_sent_as_they_are() -> None:
    proto, details = sent(EtagMismatch("profiles/u1", "stale", "fresh"))
    assert proto.message == "etag 'stale' does not match the current etag of profiles/u1; re-read and retry"
    info, failure = details
    assert isinstance(info, error_details_pb2.ErrorInfo) and dict(info.metadata) == {"current_etag": "fresh"}
    assert isinstance(failure, error_details_pb2.PreconditionFailure)
    assert failure.violations[0].subject == "profiles/u1"


def test_bounded_keeps_both_ends_and_never_splits_a_character() -> None:
    text = "start " + "é€😀" * 1000 + " end"
    short = bounded(text, 64)
    assert len(short.encode()) <= 64
    assert short.startswith("start ") and short.endswith(" end") and "…" in short
    assert short.encode().decode() == short  # whole characters only
    assert bounded("fits", 64) == "fits"
