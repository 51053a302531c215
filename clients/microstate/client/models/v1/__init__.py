"""Client of the microstate.models.v1 contract: importing this module pins a client to v1.

async with ModelsClient("localhost:50054") as models:
    await models.push("ranker", "ranker.safetensors")
    fetched = await models.fetch("ranker@champion")   # a verified, read-only local file
    log.info("%s is %s (stale: %s, %.0fs old)", fetched.path, fetched.digest, fetched.stale, fetched.age)
"""

from microstate.client.models._cache import ENV_CACHE, CachedRef, CorruptDownload, ModelCache, file_digest
from microstate.client.models.v1._client import (
    CHUNK_SIZE,
    CONTRACT,
    DEFAULT_TARGET,
    ENV_TARGET,
    AliasMoved,
    Fetched,
    ModelsClient,
    SyncModelsClient,
    parse_ref,
)
from microstate.models.v1.models_pb2 import Alias, Model, UploadResponse, UploadStatus, Version

__all__ = [
    "CHUNK_SIZE",
    "CONTRACT",
    "DEFAULT_TARGET",
    "ENV_CACHE",
    "ENV_TARGET",
    "Alias",
    "AliasMoved",
    "CachedRef",
    "CorruptDownload",
    "Fetched",
    "Model",
    "ModelCache",
    "ModelsClient",
    "SyncModelsClient",
    "UploadResponse",
    "UploadStatus",
    "Version",
    "file_digest",
    "parse_ref",
]
