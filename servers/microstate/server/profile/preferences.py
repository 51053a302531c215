"""Typed preferences, stored as reserved "pref." attributes.

v2 shows them as a typed Preferences message, v1 as plain attributes: one
stored form, so a write through either version is read back by the other.
Writes through v1 must keep them parseable, so rules.check_preferences
validates them for every version.
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


def read(attributes: Mapping[str, str]) -> Preferences:
    languages = attributes.get(LANGUAGES, "")
    return Preferences(
        theme=attributes.get(THEME, ""),
        content_languages=tuple(languages.split(",")) if languages else (),
        marketing_emails=attributes.get(MARKETING_EMAILS) == "true",
    )


def write(attributes: Mapping[str, str], preferences: Preferences) -> dict[str, str]:
    """`attributes` with the reserved keys replaced by `preferences` (defaults are not stored)."""
    updated = {k: v for k, v in attributes.items() if k not in KEYS}
    if preferences.theme:
        updated[THEME] = preferences.theme
    if preferences.content_languages:
        updated[LANGUAGES] = ",".join(preferences.content_languages)
    if preferences.marketing_emails:
        updated[MARKETING_EMAILS] = "true"
    return updated
