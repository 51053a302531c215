"""The demo monolith: a `users` table holding profile fields, and its codec to profile v1's `Profile`.

It is what the tests and the README extract the profile slice from:

    CREATE TABLE users (
        id TEXT PRIMARY KEY,          -- Profile.user_id
        display_name TEXT,            -- Profile.display_name
        locale TEXT,                  -- Profile.locale
        theme TEXT,                   -- Profile.attributes["pref.theme"]
        languages TEXT,               -- Profile.attributes["pref.languages"] (comma-separated tags)
        marketing_emails INTEGER      -- Profile.attributes["pref.marketing_emails"]: 1 "true", 0 "false"
    )

The same fields make the Redis layout: one hash `users:<id>` per user (a sorted set `users:~index` keeps the
ids in order for scans). The monolith holds no embedding, no other attributes and no timestamps: those
exist only in the microstate, and a comparison ignores them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from microstate.client.extraction.legacy import Row
from microstate.profile.v1.profile_pb2 import Profile

TABLE = "users"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, display_name TEXT, locale TEXT, theme TEXT, "
    "languages TEXT, marketing_emails INTEGER)"
)
REDIS_PREFIX = "users:"

_ATTRIBUTES = {"theme": "pref.theme", "languages": "pref.languages"}
_MARKETING = "pref.marketing_emails"


class UsersCodec:
    """`RowCodec[Profile]` of the demo `users` table (and of its Redis hashes, whose values are strings)."""

    key_column = "id"
    columns = ("display_name", "locale", "theme", "languages", "marketing_emails")

    def to_row(self, message: Profile) -> dict[str, Any]:
        attributes = message.attributes
        marketing = attributes.get(_MARKETING)
        return {
            "display_name": message.display_name or None,
            "locale": message.locale or None,
            **{column: attributes.get(name) for column, name in _ATTRIBUTES.items()},
            "marketing_emails": None if marketing is None else int(marketing == "true"),
        }

    def from_row(self, key: str, row: Row) -> Profile:
        profile = Profile(user_id=key, display_name=row.get("display_name") or "")
        profile.locale = row.get("locale") or ""
        for column, name in _ATTRIBUTES.items():
            if row.get(column) is not None:
                profile.attributes[name] = str(row[column])
        if (marketing := row.get("marketing_emails")) is not None:
            profile.attributes[_MARKETING] = "true" if int(marketing) else "false"
        return profile

    def key_of(self, message: Profile) -> str:
        return message.user_id


def create_sqlite(path: str) -> None:
    """Create the demo monolith's `users` table in the SQLite file at `path` (idempotent)."""
    with sqlite3.connect(path) as connection:
        connection.execute(SCHEMA)
    connection.close()
