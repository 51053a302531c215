"""The demo monolith: a `users` table holding profile fields and a `feature_toggles` table, and their codecs
to profile v1's `Profile` and flags v1's `Flag`.

It is what the tests and the README extract the profile slice (and the flags slice) from:

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

    CREATE TABLE feature_toggles (
        name TEXT PRIMARY KEY,        -- Flag.key
        enabled INTEGER,              -- Flag.default_variant: 1 "on", 0 "off"
        description TEXT              -- Flag.description
    )

A toggle is a boolean flag with the variants "on" (true) and "off" (false), served to everyone by its
default variant; in Redis, one hash `toggles:<name>`. Targeting rules, other variants and metadata exist
only in the flags microstate.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from microstate.client.extraction.legacy import Row
from microstate.flags.v1 import flags_pb2
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


TOGGLES_TABLE = "feature_toggles"
TOGGLES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feature_toggles (name TEXT PRIMARY KEY, enabled INTEGER, description TEXT)"
)
TOGGLES_REDIS_PREFIX = "toggles:"
ON, OFF = "on", "off"


def toggle(name: str, enabled: bool, description: str = "") -> flags_pb2.Flag:
    """The flag a monolith toggle is: boolean, variants on/off, `enabled` choosing the default."""
    flag = flags_pb2.Flag(
        key=name,
        state=flags_pb2.FLAG_STATE_ENABLED,
        type=flags_pb2.VARIANT_TYPE_BOOL,
        default_variant=ON if enabled else OFF,
        description=description,
    )
    for variant, value in ((ON, True), (OFF, False)):
        flag.variants.add(name=variant, value=flags_pb2.VariantValue(bool_value=value))
    return flag


class TogglesCodec:
    """`RowCodec[Flag]` of the demo `feature_toggles` table (and its Redis hashes). A flag reads as enabled
    when its default variant is "on"; its state, rules and other variants are not the monolith's."""

    key_column = "name"
    columns = ("enabled", "description")

    def to_row(self, message: flags_pb2.Flag) -> dict[str, Any]:
        return {"enabled": int(message.default_variant == ON), "description": message.description or None}

    def from_row(self, key: str, row: Row) -> flags_pb2.Flag:
        enabled = row.get("enabled")
        return toggle(key, enabled is not None and bool(int(enabled)), row.get("description") or "")

    def key_of(self, message: flags_pb2.Flag) -> str:
        return message.key


def create_sqlite(path: str) -> None:
    """Create the demo monolith's tables (`users`, `feature_toggles`) in the SQLite file at `path`
    (idempotent)."""
    with sqlite3.connect(path) as connection:
        connection.execute(SCHEMA)
        connection.execute(TOGGLES_SCHEMA)
    connection.close()
