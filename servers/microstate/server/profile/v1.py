"""microstate.profile.v1 <-> the stored ProfileData (see servicer.Codec)."""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import replace

from microstate.profile.v1 import profile_pb2 as pb
from microstate.server.errors import InvalidArgument
from microstate.server.profile import preferences
from microstate.server.profile.domain import Contract, Patch
from microstate.server.profile.model import ProfileData, StoredProfile
from microstate.server.profile.servicer import Codec
from microstate.server.wellknown import timestamp


def _field_path(name: str) -> str:
    if name.startswith(preferences.PREFIX):
        return f"profile.attributes[{name!r}]"
    return f"profile.{name}"


CONTRACT = Contract("microstate.profile.v1", _field_path)

_WRITABLE = ("display_name", "locale", "attributes", "embedding")


def to_message(stored: StoredProfile) -> pb.Profile:
    data = stored.data
    return pb.Profile(
        user_id=data.user_id,
        display_name=data.display_name,
        locale=data.locale,
        attributes=data.attributes,
        embedding=data.embedding,
        etag=stored.etag,
        create_time=timestamp(data.create_time_ns),
        update_time=timestamp(data.update_time_ns),
    )


def from_message(message: pb.Profile) -> ProfileData:
    return ProfileData(
        user_id=message.user_id,
        display_name=message.display_name,
        locale=message.locale,
        attributes=dict(message.attributes),
        embedding=array.array("f", message.embedding),
    )


def patch_for(message: pb.Profile, paths: Sequence[str]) -> Patch:
    """The domain patch an AIP-134 update_mask describes; unknown paths are INVALID_ARGUMENT."""
    fields: set[str] = set()
    attribute_keys: set[str] = set()
    for path in paths or ["*"]:
        if path == "*":
            fields.update(_WRITABLE)
        elif path in _WRITABLE:
            fields.add(path)
        elif path.startswith("attributes.") and len(path) > len("attributes."):
            attribute_keys.add(path.removeprefix("attributes."))
        else:
            raise InvalidArgument(
                "update_mask",
                f"unknown or read-only path {path!r}; updatable: {', '.join(_WRITABLE)}, attributes.<key>",
                reason="INVALID_UPDATE_MASK",
            )
    new = from_message(message)

    def apply(current: ProfileData) -> ProfileData:
        updated = replace(current, **{name: getattr(new, name) for name in fields})
        if "embedding" in fields and updated.embedding != current.embedding:
            # v1 cannot say which model made the new values, so the old tag would lie.
            updated = replace(updated, embedding_model="", embedding_model_version="")
        if attribute_keys:
            attributes = dict(updated.attributes)
            for key in attribute_keys:
                if key in message.attributes:
                    attributes[key] = message.attributes[key]
                else:
                    attributes.pop(key, None)
            updated = replace(updated, attributes=attributes)
        return updated

    return apply


CODEC = Codec(pb, CONTRACT, to_message, from_message, patch_for)
