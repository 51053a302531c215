"""Typed preferences, stored as reserved "pref." attributes.

v2 shows them as a typed Preferences message, v1 as plain attributes: one
stored form, so a write through either version is read back by the other.
Writes through v1 must keep them parseable, so rules.check_preferences
validates them for every version.

The stored form is what v1 has always shown: "light", "dark" or "system";
the content languages joined by ","; "true" (v1 may also write "false").
It is exact both ways because both versions hold every language to a BCP-47
tag (rules.check_languages), which is never empty and never holds a comma.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "pref."
THEME = "pref.theme"
LANGUAGES = "pref.languages"
MARKETING_EMAILS = "pref.marketing_emails"
KEYS = (THEME, LANGUAGES, MARKETING_EMAILS)
THEMES = ("light", "dark", "system")
MAX_LANGUAGES = 16


@dataclass(frozen=True, slots=True)
class Preferences:
    theme: str = ""
    """One of THEMES, or "" for no preference."""
    content_languages: tuple[str, ...] = ()
    marketing_emails: bool = False


def split_languages(stored: str) -> list[str]:
    return stored.split(",") if stored else []


def read(attributes: Mapping[str, str]) -> Preferences:
    theme = attributes.get(THEME, "")
    return Preferences(
        theme=theme if theme in THEMES else "",  # older v1 servers stored any value
        content_languages=tuple(split_languages(attributes.get(LANGUAGES, ""))),
        marketing_emails=attributes.get(MARKETING_EMAILS) == "true",
    )


def write(attributes: Mapping[str, str], preferences: Preferences) -> dict[str, str]:
    """`attributes` with the reserved keys set to `preferences` (defaults are not stored). A key whose value
    is unchanged keeps its stored spelling, so writing back what was read changes nothing (v1's "false")."""
    before, after = _stored(read(attributes)), _stored(preferences)
    updated = dict(attributes)
    for key in KEYS:
        if before.get(key) == after.get(key):
            continue
        if key in after:
            updated[key] = after[key]
        else:
            updated.pop(key, None)
    return updated


def _stored(preferences: Preferences) -> dict[str, str]:
    stored = {}
    if preferences.theme:
        stored[THEME] = preferences.theme
    if preferences.content_languages:
        stored[LANGUAGES] = ",".join(preferences.content_languages)
    if preferences.marketing_emails:
        stored[MARKETING_EMAILS] = "true"
    return stored
