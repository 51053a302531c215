"""Documented limits and validation for profiles (shared by every contract version).

Limits are part of the contract (see profile.proto); breaking one is
INVALID_ARGUMENT with a BadRequest field violation, checked before any write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

from microstate.server.errors import InvalidArgument
from microstate.server.profile import preferences
from microstate.server.profile.model import ProfileData

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_USER_IDS_PATTERN = re.compile(rf"(?:(?:{USER_ID_PATTERN.pattern})\n)*")
USER_ID_RULE = "1 to 128 characters from [A-Za-z0-9._:@-], starting with a letter or a digit"
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MAX_NAME = 256
MAX_MODEL = 128
MAX_MODEL_VERSION = 64
MAX_CONSENTS = 32
PURPOSE_PATTERN = re.compile(r"[a-z0-9_.-]{1,64}")
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


def check_user_ids(user_ids: Sequence[str], field: str) -> None:
    # One match over the ids joined by a character no id may hold is a third of one match per id. An id
    # that holds the separator itself shows as one separator too many.
    joined = "\n".join(user_ids) + "\n"
    if _USER_IDS_PATTERN.fullmatch(joined) and joined.count("\n") == len(user_ids):
        return
    for index, user_id in enumerate(user_ids):
        check_user_id(user_id, f"{field}[{index}]")


def check_attributes(attributes: Mapping[str, str], field: str) -> None:
    # The reserved "pref." keys are v2's preferences and count against v2's limits, not this one: a v2
    # write must never fail on a v1 limit, and v1 must be able to write back the attributes it reads.
    own = sum(not key.startswith(preferences.PREFIX) for key in attributes)
    if own > MAX_ATTRIBUTES:
        raise InvalidArgument(
            field,
            f"{own} entries besides the reserved {preferences.PREFIX!r} keys; at most {MAX_ATTRIBUTES}",
            reason="LIMIT_EXCEEDED",
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


FieldPath = Callable[[str], str]
"""Maps a ProfileData field name to the request field path a contract version reports it under."""


def check_profile(data: ProfileData, path: FieldPath, before: ProfileData | None = None) -> None:
    """Every rule on a profile's content, reported under the caller's contract field paths. `before` is the
    stored profile an update starts from."""
    check_user_id(data.user_id, path("user_id"))
    for name in ("display_name", "given_name", "family_name"):
        if len(getattr(data, name)) > MAX_NAME:
            raise InvalidArgument(path(name), f"at most {MAX_NAME} characters", reason="LIMIT_EXCEEDED")
    if data.locale:
        check_language_tag(data.locale, path("locale"))
    check_attributes(data.attributes, path("attributes"))
    check_preferences(data.attributes, path, before.attributes if before else {})
    if len(data.embedding) > MAX_EMBEDDING:
        raise InvalidArgument(
            path("embedding"),
            f"{len(data.embedding)} values; at most {MAX_EMBEDDING}",
            reason="LIMIT_EXCEEDED",
        )
    if not all(map(math.isfinite, data.embedding)):
        raise InvalidArgument(path("embedding"), "every value must be finite (no NaN or infinity)")
    for name, limit in (("embedding_model", MAX_MODEL), ("embedding_model_version", MAX_MODEL_VERSION)):
        if len(getattr(data, name)) > limit:
            raise InvalidArgument(path(name), f"at most {limit} characters", reason="LIMIT_EXCEEDED")
    check_consents(data, path("consents"))


def check_language_tag(tag: str, field: str) -> None:
    if len(tag) > MAX_LOCALE or not LOCALE_PATTERN.fullmatch(tag):
        raise InvalidArgument(field, f"{tag[:40]!r} is not a BCP-47 tag of at most {MAX_LOCALE} characters")


def check_languages(tags: Sequence[str], field: str, *, indexed: bool) -> None:
    """Preferred content languages: at most MAX_LANGUAGES tags, each a BCP-47 tag like a locale. Such a tag is
    never empty and never holds a comma, which keeps their stored form (preferences.py) exact. `indexed`:
    a bad tag is reported as `field[index]` (a repeated field) rather than as `field` (one joined string)."""
    if len(tags) > preferences.MAX_LANGUAGES:
        raise InvalidArgument(
            field, f"{len(tags)} languages; at most {preferences.MAX_LANGUAGES}", reason="LIMIT_EXCEEDED"
        )
    for index, tag in enumerate(tags):
        check_language_tag(tag, f"{field}[{index}]" if indexed else field)


def check_consents(data: ProfileData, field: str) -> None:
    if len(data.consents) > MAX_CONSENTS:
        raise InvalidArgument(field, f"at most {MAX_CONSENTS} consent records", reason="LIMIT_EXCEEDED")
    purposes = [c.purpose for c in data.consents]
    for index, purpose in enumerate(purposes):
        if not PURPOSE_PATTERN.fullmatch(purpose):
            raise InvalidArgument(f"{field}[{index}].purpose", "1 to 64 characters from [a-z0-9_.-]")
    if len(set(purposes)) != len(purposes):
        raise InvalidArgument(field, "one record per purpose")


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def check_preferences(attributes: Mapping[str, str], path: FieldPath, before: Mapping[str, str]) -> None:
    """The reserved keys a write sets or changes. Values it leaves as they were stored are not judged again:
    v1 servers before v2 took any "pref." attribute, and those records must stay writable."""
    for key, value in attributes.items():
        if not key.startswith(preferences.PREFIX) or before.get(key) == value:
            continue
        field = path(key)
        if key == preferences.THEME and value not in preferences.THEMES:
            raise InvalidArgument(field, f"one of {', '.join(preferences.THEMES)}")
        elif key == preferences.MARKETING_EMAILS and value not in ("true", "false"):
            raise InvalidArgument(field, '"true" or "false"')
        elif key == preferences.LANGUAGES:
            check_languages(preferences.split_languages(value), field, indexed=False)
        elif key not in preferences.KEYS:
            raise InvalidArgument(
                field,
                f"keys starting with {preferences.PREFIX!r} are reserved: {', '.join(preferences.KEYS)}",
            )
