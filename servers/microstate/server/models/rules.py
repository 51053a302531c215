"""Documented limits and forms of the model registry (see models.proto), checked before any store access.

Breaking one is INVALID_ARGUMENT with a BadRequest field violation naming the request field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from microstate.server.errors import InvalidArgument
from microstate.server.kit import limits
from microstate.server.store.blobs.base import DIGEST, UPLOAD_ID

MODEL_ID: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
MODEL_ID_RULE: Final = "1 to 63 characters of [a-z0-9_.-], starting with a letter or a digit"
ALIAS: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}")
ALIAS_RULE: Final = "1 to 63 characters of [a-z0-9_-], starting with a letter"
UPLOAD_ID_RULE: Final = "1 to 128 characters of [A-Za-z0-9_.-], starting with a letter or a digit"
LABELS: Final = limits.MapLimits(max_entries=64, max_key=63, max_value=255)
METADATA: Final = limits.MapLimits(max_entries=64, max_key=128, max_value=4096)
MAX_DESCRIPTION: Final = 4096
MAX_MEDIA_TYPE: Final = 255
MAX_CHUNK_BYTES: Final = 1024 * 1024
"""The most bytes one UploadChunk may carry (the contract's 1 MiB)."""
MAX_HISTORY: Final = 1000
"""Moves an alias keeps in its history."""
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
ABSENT_ETAG: Final = "absent"
"""SetAlias's etag that means "create only"."""


def check_model_id(model_id: str, field: str = "model_id") -> None:
    limits.check_form(model_id, MODEL_ID, field, MODEL_ID_RULE, reason="INVALID_MODEL_ID")


def check_alias(alias: str, field: str = "alias") -> None:
    limits.check_form(alias, ALIAS, field, ALIAS_RULE, reason="INVALID_ALIAS")


def check_version(version: int, field: str = "version") -> None:
    if version < 1:
        raise InvalidArgument(field, f"versions are numbered from 1, not {version}")


def check_digest(digest: str, field: str = "digest") -> None:
    limits.check_form(
        digest, DIGEST, field, "a digest is sha256: and 64 lowercase hex digits", reason="INVALID_DIGEST"
    )


def check_upload_id(upload_id: str, field: str = "upload_id") -> None:
    limits.check_form(upload_id, UPLOAD_ID, field, UPLOAD_ID_RULE, reason="INVALID_UPLOAD_ID")


def check_text(text: str, maximum: int, field: str) -> None:
    if len(text.encode()) > maximum:
        raise InvalidArgument(field, f"at most {maximum} bytes", reason="LIMIT_EXCEEDED")


def check_size(size: int, field: str = "size_bytes") -> None:
    if size < 0:
        raise InvalidArgument(field, f"must not be negative, not {size}")


@dataclass(frozen=True, slots=True)
class Ref:
    """What a reference names: a digest, a version of a model, or an alias of a model."""

    digest: str = ""
    model_id: str = ""
    version: int = 0
    alias: str = ""


def parse_ref(ref: str, field: str = "ref") -> Ref:
    """ "sha256:<hex>", "<model>/<n>" or "<model>@<alias>" (a digest only where `allow_digest`)."""
    if ref.startswith("sha256:"):
        check_digest(ref, field)
        return Ref(digest=ref)
    model_id, at, alias = ref.partition("@")
    if at:
        check_model_id(model_id, field)
        check_alias(alias, field)
        return Ref(model_id=model_id, alias=alias)
    model_id, slash, number = ref.partition("/")
    if not slash or not number.isdigit() or number.startswith("0"):
        raise InvalidArgument(
            field,
            f"{limits.shown(ref)} is not sha256:<hex>, <model>/<n> or <model>@<alias>",
            reason="INVALID_REF",
        )
    check_model_id(model_id, field)
    return Ref(model_id=model_id, version=int(number))
