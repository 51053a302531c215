"""The stored representation round-trips exactly (it is what every contract version shares)."""

from __future__ import annotations

import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microstate.profile.storage.v1.record_pb2 import ConsentRecord, ProfileRecord
from microstate.server import wellknown
from microstate.server.kit.caches import DecodedRecords
from microstate.server.profile.model import PROFILE, Consent, ProfileData
from microstate.server.store.base import Record

float32 = st.floats(width=32, allow_nan=False)


@given(
    user_id=st.text(min_size=1, max_size=20),
    display_name=st.text(max_size=50),
    attributes=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
    embedding=st.lists(float32, max_size=50),
    times=st.tuples(st.integers(0, 2**62), st.integers(0, 2**62)),
)
def test_profile_data_round_trips(
    user_id: str,
    display_name: str,
    attributes: dict[str, str],
    embedding: list[float],
    times: tuple[int, int],
) -> None:
    data = ProfileData(
        user_id=user_id,
        display_name=display_name,
        locale="en",
        attributes=attributes,
        embedding=array.array("f", embedding),
        create_time_ns=times[0],
        update_time_ns=times[1],
        written_by="microstate.profile.v1",
    )
    assert ProfileData.from_bytes(data.to_bytes()) == data


def test_decoded_profiles_are_reused_only_for_the_same_stored_bytes() -> None:
    decoded = DecodedRecords(PROFILE.stored, max_entries=2)
    first = Record("u1", ProfileData(user_id="u1", display_name="A").to_bytes(), revision=1)
    assert decoded.decode(first) is decoded.decode(first)
    changed = Record("u1", ProfileData(user_id="u1", display_name="B").to_bytes(), revision=2)
    assert decoded.decode(changed).data.display_name == "B"
    refilled = Record("u1", ProfileData(user_id="u1", display_name="C").to_bytes(), revision=2)
    assert decoded.decode(refilled).data.display_name == "C"  # same revision, other bytes: decoded again
    for key in ("u2", "u3"):
        decoded.decode(Record(key, ProfileData(user_id=key).to_bytes(), revision=3))
    again = decoded.decode(refilled)
    assert again.data.display_name == "C" and len(decoded) == 2  # bounded: u1 was evicted


@given(
    decide_time_ns=st.integers(
        wellknown.MIN_TIMESTAMP_SECONDS * 10**9, wellknown.MAX_TIMESTAMP_SECONDS * 10**9 + 999_999_999
    )
)
def test_consent_times_round_trip_across_the_whole_timestamp_range(decide_time_ns: int) -> None:
    data = ProfileData(user_id="u1", consents=(Consent("personalisation", True, decide_time_ns),))
    assert ProfileData.from_bytes(data.to_bytes()) == data


def test_consent_times_int64_can_hold_are_stored_as_older_servers_wrote_and_read_them() -> None:
    older = ConsentRecord(purpose="p", granted=True, decide_time_ns=1_764_150_000_123_456_789)
    assert Consent.from_record(older) == Consent("p", True, 1_764_150_000_123_456_789)
    assert Consent.from_record(older).to_record() == older  # no decide_time: same bytes as before


@pytest.mark.parametrize(("ns", "clamped"), [(-(2**63) - 1, -(2**63)), (2**63, 2**63 - 1)])
def test_consent_times_int64_cannot_hold_read_clamped_on_servers_that_predate_the_exact_field(
    ns: int, clamped: int
) -> None:
    stored = ProfileData(user_id="u1", consents=(Consent("p", True, ns),)).to_bytes()
    # What an older server's decoder sees: its ConsentRecord has no field 4.
    older = ProfileRecord.FromString(stored).consents[0]
    older.ClearField("decide_time")
    assert older.decide_time_ns == clamped
    assert Consent.from_record(older).decide_time_ns == clamped
