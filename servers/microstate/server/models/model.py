"""What the models microstate stores in its records store, under which keys (bytes live in the blob store).

- `m/<model_id>`: a model (`ModelData`) with the highest version number known committed;
- `v/<model_id>/<n, 12 digits>`: a version (`VersionData`), written once with if-absent and never again: it is
  the commit point of an upload, and numbers are gapless because version n+1 is only ever written after n;
- `a/<model_id>/<alias>`: an alias (`AliasData`) and its last moves;
- `u/<upload_id>`: an upload's header and, once done, the version it made (`UploadData`), expiring with the
  upload's bytes.

Encoded as the `microstate.models.storage.v1` records (proto/), kept readable forever by `buf breaking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from microstate.models.storage.v1.record_pb2 import (
    AliasMoveRecord,
    AliasRecord,
    ModelRecord,
    UploadRecord,
    VersionRecord,
)
from microstate.server.kit import records
from microstate.server.kit.resources import Kind

MODEL_PREFIX = "m/"
VERSION_PREFIX = "v/"
ALIAS_PREFIX = "a/"
UPLOAD_PREFIX = "u/"
VERSION_DIGITS = 12


def model_key(model_id: str) -> str:
    return MODEL_PREFIX + model_id


def version_key(model_id: str, version: int) -> str:
    return f"{VERSION_PREFIX}{model_id}/{version:0{VERSION_DIGITS}d}"


def versions_prefix(model_id: str) -> str:
    return f"{VERSION_PREFIX}{model_id}/"


def alias_key(model_id: str, alias: str) -> str:
    return f"{ALIAS_PREFIX}{model_id}/{alias}"


def aliases_prefix(model_id: str) -> str:
    return f"{ALIAS_PREFIX}{model_id}/"


def upload_key(upload_id: str) -> str:
    return UPLOAD_PREFIX + upload_id


def split_key(key: str) -> tuple[str, str]:
    """`v/<model>/<n>` or `a/<model>/<alias>` -> (model, last part)."""
    model_id, _, last = key[2:].partition("/")
    return model_id, last


def _encode(value: object, message_type: type[records.M]) -> bytes:
    return records.to_message(value, message_type).SerializeToString(deterministic=True)


@dataclass(frozen=True, slots=True)
class ModelData:
    model_id: str
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    latest_version: int = 0
    create_time_ns: int = 0
    update_time_ns: int = 0

    def to_bytes(self) -> bytes:
        return _encode(self, ModelRecord)


@dataclass(frozen=True, slots=True)
class VersionData:
    model_id: str
    version: int
    digest: str
    size_bytes: int
    media_type: str
    metadata: Mapping[str, str]
    create_time_ns: int
    upload_id: str

    def to_bytes(self) -> bytes:
        return _encode(self, VersionRecord)


@dataclass(frozen=True, slots=True)
class AliasMove:
    from_version: int
    to_version: int
    move_time_ns: int


@dataclass(frozen=True, slots=True)
class AliasData:
    model_id: str
    alias: str
    version: int
    update_time_ns: int
    history: tuple[AliasMove, ...] = ()

    def to_bytes(self) -> bytes:
        moves = [records.to_message(move, AliasMoveRecord) for move in self.history]
        return records.to_message(self, AliasRecord, history=moves).SerializeToString(deterministic=True)


@dataclass(frozen=True, slots=True)
class UploadData:
    model_id: str
    digest: str
    size_bytes: int
    media_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: int = 0

    def to_bytes(self) -> bytes:
        return _encode(self, UploadRecord)

    def same_upload(self, other: UploadData) -> bool:
        """Whether `other` declares the same bytes for the same model (a resumed stream must)."""
        return (self.model_id, self.digest, self.size_bytes) == (
            other.model_id,
            other.digest,
            other.size_bytes,
        )


def _model(raw: bytes) -> ModelData:
    return records.from_message(ModelRecord.FromString(raw), ModelData)


def _version(raw: bytes) -> VersionData:
    return records.from_message(VersionRecord.FromString(raw), VersionData)


def _alias(raw: bytes) -> AliasData:
    record = AliasRecord.FromString(raw)
    moves = tuple(records.from_message(move, AliasMove) for move in record.history)
    return records.from_message(record, AliasData, history=moves)


def _upload(raw: bytes) -> UploadData:
    return records.from_message(UploadRecord.FromString(raw), UploadData)


MODEL: Kind[ModelData] = Kind("model", "model_id", ModelData.to_bytes, _model)
VERSION: Kind[VersionData] = Kind("version", "version", VersionData.to_bytes, _version)
ALIAS: Kind[AliasData] = Kind("alias", "alias", AliasData.to_bytes, _alias)
UPLOAD: Kind[UploadData] = Kind("upload", "upload_id", UploadData.to_bytes, _upload)
