"""Documented limits and validation for sessions (see session.proto).

Breaking a limit is INVALID_ARGUMENT with a BadRequest field violation, checked before any store access.
Tokens are not checked here: a bad token is UNAUTHENTICATED, never INVALID_ARGUMENT (see tokens.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from microstate.server.errors import InvalidArgument
from microstate.server.kit import limits

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS

MIN_TTL_NS = SECOND_NS
MAX_MAX_TTL_NS = 366 * DAY_NS
DEFAULT_MAX_TTL_NS = 24 * HOUR_NS
DEFAULT_IDLE_TTL_NS = 30 * MINUTE_NS
REFRESH_GRACE_NS = 30 * SECOND_NS
"""How long a spent refresh token still gets its successor, and a replaced session token still validates."""
REQUEST_ID_WINDOW_NS = 10 * MINUTE_NS
"""How long a retried CreateSession gets the same session and tokens back."""
MAX_SPENT_REFRESH_DIGESTS = 16
"""How many older spent refresh tokens per session are still recognised as reuse."""

USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
USER_ID_RULE = "1 to 128 characters from [A-Za-z0-9._:@-], starting with a letter or a digit"
SESSION_ID = re.compile(r"[0-9a-f]{32}")
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token: no space, '"' or '\'
MAX_SCOPES = 64
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
ATTRIBUTES = limits.MapLimits(max_entries=32, max_key=128, max_value=1024)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_LISTING_SCAN = 1000
"""Index entries one ListUserSessions call looks at, at most: dead entries cost a call no more than this."""


def check_user_id(user_id: str, field: str) -> None:
    limits.check_form(user_id, USER_ID, field, USER_ID_RULE, reason="INVALID_USER_ID")


def check_session_id(session_id: str, field: str) -> None:
    limits.check_form(session_id, SESSION_ID, field, "a session id is 32 lowercase hexadecimal characters")


def scopes_of(scopes: Sequence[str], field: str) -> tuple[str, ...]:
    """The scopes, checked, sorted and without duplicates."""
    if len(scopes) > MAX_SCOPES:
        raise InvalidArgument(field, f"{len(scopes)} scopes; at most {MAX_SCOPES}", reason="LIMIT_EXCEEDED")
    for index, scope in enumerate(scopes):
        if not SCOPE.fullmatch(scope):
            raise InvalidArgument(
                f"{field}[{index}]",
                "1 to 128 printable ASCII characters other than space, '\"' and '\\'",
            )
    return tuple(sorted(set(scopes)))


def check_attributes(attributes: Mapping[str, str], field: str) -> None:
    ATTRIBUTES.check(attributes, field)


def check_request_id(request_id: str, field: str) -> None:
    if request_id and not REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(field, "at most 128 printable ASCII characters, no spaces")


def lifetimes_of(idle_ttl_ns: int | None, max_ttl_ns: int | None) -> tuple[int, int]:
    """(idle, max) with the defaults applied; None means the field was absent."""
    max_ns = DEFAULT_MAX_TTL_NS if max_ttl_ns is None else max_ttl_ns
    if not MIN_TTL_NS <= max_ns <= MAX_MAX_TTL_NS:
        raise InvalidArgument("max_ttl", "at least 1 second and at most 366 days")
    idle_ns = min(DEFAULT_IDLE_TTL_NS, max_ns) if idle_ttl_ns is None else idle_ttl_ns
    if not MIN_TTL_NS <= idle_ns <= max_ns:
        raise InvalidArgument("idle_ttl", "at least 1 second and at most max_ttl")
    return idle_ns, max_ns


def page_size_of(requested: int) -> int:
    return limits.page_size_of(requested, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
