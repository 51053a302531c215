"""Documented limits and validation for telemetry (see telemetry.proto).

A malformed batch (producer_id, too many events) is INVALID_ARGUMENT for the whole call; a malformed event is
only rejected (OTLP-style partial success), so `event_problem` returns what is wrong instead of raising.
"""

from __future__ import annotations

import math
import re
from typing import Final

from microstate.server.errors import InvalidArgument
from microstate.server.kit import limits
from microstate.telemetry.v1 import telemetry_pb2 as pb

SECOND_NS: Final = 1_000_000_000
MINUTE_NS: Final = 60 * SECOND_NS
MINUTE: Final = 60.0
DAY: Final = 24 * 3600.0

MAX_EVENTS: Final = 4096
MAX_ATTRIBUTES: Final = 16
MAX_ATTRIBUTE_KEY: Final = 64
MAX_ATTRIBUTE_VALUE: Final = 128
MAX_SUBJECT_ID: Final = 128
FUTURE_SLACK_NS: Final = 5 * MINUTE_NS
"""How far ahead of the server's clock an event's time may be (producers' clocks drift)."""
MAX_GROUP_VALUES: Final = 100
"""Distinct values of one attribute kept per name and minute; later ones are counted under OTHER."""
MAX_ATTRIBUTE_KEYS: Final = 64
"""Attribute keys kept per name and minute; events still count in the total past it."""
OTHER: Final = "__other__"
MAX_WINDOW_MINUTES: Final = 31 * 24 * 60

DEFAULT_RAW_TTL: Final = DAY
DEFAULT_ROLLUP_TTL: Final = 30 * DAY
MIN_RAW_TTL: Final = 600.0
"""Raw retention covers at least the dedupe window: a resent batch is answered from its stored entry."""

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,127}")
NAME_RULE = "a letter, then up to 127 letters, digits, '_', '.', ':' or '-'"
PRODUCER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")

_known_names: dict[str, None] = {}
"""Names seen valid, so a hot batch checks each name by one dict lookup (bounded: cleared when full)."""
_MAX_KNOWN_NAMES: Final = 10_000


def check_producer_id(producer_id: str) -> None:
    limits.check_form(producer_id, PRODUCER_ID, "producer_id", "1 to 64 letters, digits, '_' or '-'")


def check_event_count(count: int) -> None:
    if count > MAX_EVENTS:
        raise InvalidArgument("events", f"{count} events; at most {MAX_EVENTS}", reason="LIMIT_EXCEEDED")


def check_name(name: str, field: str = "name") -> None:
    limits.check_form(name, NAME, field, NAME_RULE)


def check_group_by(group_by: str) -> None:
    if group_by:
        limits.check_form(
            group_by, ATTRIBUTE_KEY, "group_by", "an attribute key: 1 to 64 of [A-Za-z0-9_.:/-]"
        )


def _name_valid(name: str) -> bool:
    if name in _known_names:
        return True
    if not NAME.fullmatch(name):
        return False
    if len(_known_names) >= _MAX_KNOWN_NAMES:
        _known_names.clear()
    _known_names[name] = None
    return True


def event_problem(event: pb.Event, now_ns: int, oldest_ns: int) -> str | None:
    """What makes `event` unacceptable ("field: why"), or None. A time of 0 is acceptable (it becomes now)."""
    if not _name_valid(event.name):
        return f"name: {limits.shown(event.name)} is not valid: {NAME_RULE}"
    if len(event.subject_id) > MAX_SUBJECT_ID:
        return f"subject_id: at most {MAX_SUBJECT_ID} characters"
    if not math.isfinite(event.value):
        return "value: must be finite"
    time_ns = event.time_unix_nano
    if time_ns and not oldest_ns <= time_ns <= now_ns + FUTURE_SLACK_NS:
        return "time_unix_nano: outside the rollup retention, or more than 5 minutes ahead"
    attributes = event.attributes
    if attributes:
        if len(attributes) > MAX_ATTRIBUTES:
            return f"attributes: {len(attributes)} entries; at most {MAX_ATTRIBUTES}"
        for key, value in attributes.items():
            if not ATTRIBUTE_KEY.fullmatch(key):
                return f"attributes[{limits.shown(key)}]: keys are 1 to 64 of [A-Za-z0-9_.:/-]"
            if len(value) > MAX_ATTRIBUTE_VALUE:
                return f"attributes[{limits.shown(key)}]: values are at most {MAX_ATTRIBUTE_VALUE} characters"
    return None


def window_minutes(start_ns: int, end_ns: int, step_ns: int | None) -> tuple[int, int, int]:
    """(first minute, minutes, minutes per step) of a query window; INVALID_ARGUMENT when it is not whole
    minutes, empty, longer than MAX_WINDOW_MINUTES, or the step is not whole minutes."""
    if start_ns % MINUTE_NS or end_ns % MINUTE_NS:
        raise InvalidArgument("start_time", "start_time and end_time must be whole minutes")
    minutes = (end_ns - start_ns) // MINUTE_NS
    if minutes <= 0:
        raise InvalidArgument("end_time", "must be after start_time")
    if minutes > MAX_WINDOW_MINUTES:
        raise InvalidArgument("end_time", "the window is at most 31 days", reason="LIMIT_EXCEEDED")
    step = MINUTE_NS if step_ns is None else step_ns
    if step <= 0 or step % MINUTE_NS:
        raise InvalidArgument("step", "must be a positive whole number of minutes")
    return start_ns // MINUTE_NS, minutes, step // MINUTE_NS
