"""Documented limits and validation for profiles (shared by every contract version).

Limits are part of the contract (see profile.proto); breaking one is
INVALID_ARGUMENT with a BadRequest field violation, checked before any write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from microstate.server.errors import InvalidArgument
from microstate.server.profile.model import ProfileData

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
USER_ID_RULE = "1 to 128 characters from [A-Za-z0-9._:@-], starting with a letter or a digit"
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MAX_DISPLAY_NAME = 256
MAX_LOCALE = 35
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTE_VALUE = 1024
MAX_EMBEDDING = 4096
MAX_BATCH = 1000
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def check_user_id(user_id: str, field: str) -> None:
    if not USER_ID_PATTERN.fullmatch(user_id):
        shown = user_id if len(user_id) <= 40 else user_id[:40] + "…"
        raise InvalidArgument(
            field, f"{shown!r} is not a valid user_id: {USER_ID_RULE}", reason="INVALID_USER_ID"
        )


def check_user_ids(user_ids: Iterable[str], field: str) -> None:
    for index, user_id in enumerate(user_ids):
        check_user_id(user_id, f"{field}[{index}]")


def check_attributes(attributes: Mapping[str, str], field: str) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            field, f"{len(attributes)} entries; at most {MAX_ATTRIBUTES}", reason="LIMIT_EXCEEDED"
        )
    for key, value in attributes.items():
        if not 0 < len(key) <= MAX_ATTRIBUTE_KEY:
            raise InvalidArgument(f"{field}[{key[:40]!r}]", f"keys are 1 to {MAX_ATTRIBUTE_KEY} characters")
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise InvalidArgument(
                f"{field}[{key!r}]",
                f"values are at most {MAX_ATTRIBUTE_VALUE} characters",
                reason="LIMIT_EXCEEDED",
            )


def check_profile(data: ProfileData, prefix: str) -> None:
    """Every rule on a profile's content; field names are reported under `prefix` (e.g. "profile.")."""
    check_user_id(data.user_id, f"{prefix}user_id")
    if len(data.display_name) > MAX_DISPLAY_NAME:
        raise InvalidArgument(
            f"{prefix}display_name", f"at most {MAX_DISPLAY_NAME} characters", reason="LIMIT_EXCEEDED"
        )
    if data.locale and (len(data.locale) > MAX_LOCALE or not LOCALE_PATTERN.fullmatch(data.locale)):
        raise InvalidArgument(
            f"{prefix}locale", f"{data.locale[:40]!r} is not a BCP-47 tag of at most {MAX_LOCALE} characters"
        )
    check_attributes(data.attributes, f"{prefix}attributes")
    if len(data.embedding) > MAX_EMBEDDING:
        raise InvalidArgument(
            f"{prefix}embedding",
            f"{len(data.embedding)} values; at most {MAX_EMBEDDING}",
            reason="LIMIT_EXCEEDED",
        )
    if not all(map(math.isfinite, data.embedding)):
        raise InvalidArgument(f"{prefix}embedding", "every value must be finite (no NaN or infinity)")


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
