"""The models microstate (microstate.models.v1): a registry of model parameters with immutable,
digest-verified versions, aliases, and resumable streamed uploads and downloads.

It keeps two store roles: `records` (models, versions, aliases, upload records; any records backend) and
`blobs` (the bytes, content-addressed: by default a directory, `blobs/sha256/<ab>/<hex>`).
`MICROSTATE_MODELS_UPLOAD_TTL` sets the seconds an upload nobody continues is kept (default a day), and
how long a blob no version names (its version record failed to commit) is kept after it was last published
or claimed; a server looks for both when it starts and every ten minutes.
"""

from __future__ import annotations

import asyncio
import os

import grpc

from microstate.server.config import ConfigError
from microstate.server.kit import subjects, wire
from microstate.server.models.domain import UPLOAD_TTL, ModelsDomain
from microstate.server.models.servicer import SERVICE, ModelServicer
from microstate.server.registry import Microstate
from microstate.server.store.roles import BLOBS, RECORDS, Stores

UPLOAD_TTL_ENV = "MICROSTATE_MODELS_UPLOAD_TTL"


def upload_ttl() -> float:
    text = os.environ.get(UPLOAD_TTL_ENV, "")
    try:
        seconds = float(text) if text else UPLOAD_TTL
    except ValueError:
        raise ConfigError(f"{UPLOAD_TTL_ENV}: {text!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"{UPLOAD_TTL_ENV}: must be positive, not {text}")
    return seconds


_collectors: set[asyncio.Task[None]] = set()
"""The running collectors of abandoned uploads (held so they are not garbage-collected mid-run)."""


def attach(server: grpc.aio.Server, stores: Stores, *, stopping: asyncio.Event | None = None) -> None:
    domain = ModelsDomain(stores.records(), stores.blobs(), upload_ttl=upload_ttl())
    wire.add_service(server, SERVICE, ModelServicer(domain, stopping))
    if stopping is not None:  # served by the runtime: collect abandoned uploads until it stops
        collector = asyncio.get_running_loop().create_task(domain.collect_until(stopping))
        _collectors.add(collector)
        collector.add_done_callback(_collectors.discard)


SCOPES = {  # what each method needs when authentication is on
    **dict.fromkeys(
        ["GetModel", "ListModels", "GetVersion", "ListVersions", "ResolveRef", "GetAlias", "ListAliases"],
        "models.read",
    ),
    **dict.fromkeys(["ReadBlob", "QueryUpload", "WatchModels"], "models.read"),
    # Publishing a version, or moving an alias (which decides what a fleet serves), is a write.
    **dict.fromkeys(["CreateModel", "UpdateModel", "Upload", "SetAlias", "DeleteAlias"], "models.write"),
}

MICROSTATE = Microstate(
    name="models",
    default_port=50054,
    service_names=(SERVICE.full_name, subjects.SERVICE_NAME),
    attach=attach,
    stores=(RECORDS, BLOBS),
    scopes={**SCOPES, **subjects.SCOPES},
    subjects=subjects.NOTHING,
    unaudited_roles={
        "blobs": "immutable bytes named by their sha256; the version record that names a blob (and so its"
        " digest) is a records write, audited; upload chunks change nothing anyone can read until then",
    },
    # With BDP probing gRPC grows a fast uploader's HTTP/2 window, and the bytes it lets in wait in the
    # server's memory: +16 to +37 MiB of peak RSS for a 256 MiB upload to a busy server (bench P5). A fixed
    # 1 MiB window keeps a 1 GiB upload to +6 to +8 MiB (4 MiB: +13 to +22) for about a tenth of the upload
    # throughput (a 64 KiB window cost a fifth).
    server_options=(("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024 * 1024)),
)
