"""microstate.profile.v2 <-> the stored ProfileData (servicer.Codec; the mapping is in v2/profile.proto)."""

from __future__ import annotations

import array
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from microstate.profile.v2 import profile_pb2 as pb
from microstate.server.errors import InvalidArgument
from microstate.server.profile import preferences, rules
from microstate.server.profile.domain import Contract, Patch
from microstate.server.profile.model import Consent, ProfileData, StoredProfile
from microstate.server.profile.servicer import Codec
from microstate.server.wellknown import timestamp, timestamp_ns

_PATHS = {
    "display_name": "profile.name.display_name",
    "given_name": "profile.name.given_name",
    "family_name": "profile.name.family_name",
    "embedding": "profile.embedding.values",
    "embedding_model": "profile.embedding.model",
    "embedding_model_version": "profile.embedding.model_version",
    "attributes": "profile.preferences",
    preferences.THEME: "profile.preferences.theme",
    preferences.LANGUAGES: "profile.preferences.content_languages",
    preferences.MARKETING_EMAILS: "profile.preferences.marketing_emails",
}
CONTRACT = Contract("microstate.profile.v2", lambda name: _PATHS.get(name, f"profile.{name}"))

_THEMES = {pb.THEME_LIGHT: "light", pb.THEME_DARK: "dark", pb.THEME_SYSTEM: "system"}
_THEME_VALUES = {name: value for value, name in _THEMES.items()}


def to_message(stored: StoredProfile) -> pb.Profile:
    data = stored.data
    prefs = preferences.read(data.attributes)
    return pb.Profile(
        user_id=data.user_id,
        name=pb.PersonName(
            display_name=data.display_name, given_name=data.given_name, family_name=data.family_name
        ),
        locale=data.locale,
        preferences=pb.Preferences(
            theme=_THEME_VALUES.get(prefs.theme, pb.THEME_UNSPECIFIED),
            content_languages=prefs.content_languages,
            marketing_emails=prefs.marketing_emails,
        ),
        consents=[
            pb.Consent(purpose=c.purpose, granted=c.granted, decide_time=timestamp(c.decide_time_ns))
            for c in data.consents
        ],
        embedding=pb.Embedding(
            values=data.embedding, model=data.embedding_model, model_version=data.embedding_model_version
        ),
        etag=stored.etag,
        create_time=timestamp(data.create_time_ns),
        update_time=timestamp(data.update_time_ns),
    )


def _theme(message: pb.Profile) -> str:
    theme = message.preferences.theme
    if theme != pb.THEME_UNSPECIFIED and theme not in _THEMES:
        raise InvalidArgument("profile.preferences.theme", f"unknown Theme value {theme}")
    return _THEMES.get(theme, "")


def _languages(data: ProfileData, message: pb.Profile) -> tuple[str, ...]:
    tags = tuple(message.preferences.content_languages)
    if tags != preferences.read(data.attributes).content_languages:  # as stored is not judged again (rules)
        rules.check_languages(tags, _PATHS[preferences.LANGUAGES], indexed=True)
    return tags


def _consents(message: pb.Profile) -> tuple[Consent, ...]:
    now = time.time_ns()
    return tuple(
        Consent(c.purpose, c.granted, _decide_time(c, index) if c.HasField("decide_time") else now)
        for index, c in enumerate(message.consents)
    )


def _decide_time(consent: pb.Consent, index: int) -> int:
    return timestamp_ns(consent.decide_time, f"profile.consents[{index}].decide_time")


def _with_preference(data: ProfileData, **changes: Any) -> ProfileData:
    prefs = replace(preferences.read(data.attributes), **changes)
    return replace(data, attributes=preferences.write(data.attributes, prefs))


# Each updatable path: how it moves a value from the request into the stored profile.
_Setter = Callable[[ProfileData, pb.Profile], ProfileData]
_SETTERS: dict[str, _Setter] = {
    "name.display_name": lambda d, m: replace(d, display_name=m.name.display_name),
    "name.given_name": lambda d, m: replace(d, given_name=m.name.given_name),
    "name.family_name": lambda d, m: replace(d, family_name=m.name.family_name),
    "locale": lambda d, m: replace(d, locale=m.locale),
    "preferences.theme": lambda d, m: _with_preference(d, theme=_theme(m)),
    "preferences.content_languages": lambda d, m: _with_preference(d, content_languages=_languages(d, m)),
    "preferences.marketing_emails": lambda d, m: _with_preference(
        d, marketing_emails=m.preferences.marketing_emails
    ),
    "consents": lambda d, m: replace(d, consents=_consents(m)),
    "embedding": lambda d, m: replace(
        d,
        embedding=array.array("f", m.embedding.values),
        embedding_model=m.embedding.model,
        embedding_model_version=m.embedding.model_version,
    ),
}
_GROUPS = {
    "*": tuple(_SETTERS),
    "name": ("name.display_name", "name.given_name", "name.family_name"),
    "preferences": ("preferences.theme", "preferences.content_languages", "preferences.marketing_emails"),
}


def from_message(message: pb.Profile) -> ProfileData:
    data = ProfileData(user_id=message.user_id)
    for setter in _SETTERS.values():
        data = setter(data, message)
    return data


def patch_for(message: pb.Profile, paths: Sequence[str]) -> Patch:
    """The domain patch an AIP-134 update_mask describes; unknown paths are INVALID_ARGUMENT."""
    setters: list[_Setter] = []
    for path in paths or ["*"]:
        if path not in _SETTERS and path not in _GROUPS:
            raise InvalidArgument(
                "update_mask",
                f"unknown or read-only path {path!r}; updatable: {', '.join([*_GROUPS, *_SETTERS][1:])}",
                reason="INVALID_UPDATE_MASK",
            )
        setters += [_SETTERS[p] for p in _GROUPS.get(path, (path,))]

    def apply(current: ProfileData) -> ProfileData:
        for setter in setters:
            current = setter(current, message)
        return current

    return apply


CODEC = Codec(pb, CONTRACT, to_message, from_message, patch_for)
