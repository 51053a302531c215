"""Stores: the protocol every backend implements, and `open_store`, which picks the backend by URL scheme.

Backends are imported only when their scheme is used, so a server on SQLite never imports redis or pymongo.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from microstate.server.store._shared import backend_class
from microstate.server.store.base import (
    ABSENT,
    Capabilities,
    Change,
    ChangeKind,
    CursorExpired,
    IfMatch,
    InvalidCursor,
    Page,
    PreconditionFailed,
    Record,
    Store,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
)

# URL scheme -> "module:class"; each class has `async classmethod open(url, namespace, **options) -> Store`.
BACKENDS: dict[str, str] = {
    "sqlite": "microstate.server.store.sqlite:SqliteStore",
    "redis": "microstate.server.store.redis:RedisStore",
    "rediss": "microstate.server.store.redis:RedisStore",
    "redis+cluster": "microstate.server.store.redis_cluster:RedisClusterStore",
    "mongodb": "microstate.server.store.mongo:MongoStore",
    "mongodb+srv": "microstate.server.store.mongo:MongoStore",
}


class _Backend(Protocol):
    @classmethod
    async def open(cls, url: str, namespace: str, **options: Any) -> Store: ...


async def open_store(url: str, namespace: str, **options: Any) -> Store:
    """Open `namespace` on the store at `url`; `options` go to the backend's `open` (e.g. `retention`).

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `redis://host:port/db`, `rediss://…`,
    `mongodb://…`, `mongodb+srv://…`. Each of the backend's settings may also be given in the URL's query
    (`?retention=10000`), where it wins over `options`; the driver's own query parameters pass through
    (store/_url_settings.py). A URL that cannot be used (unknown scheme, malformed, an SQLite URL without a
    file, an unknown query key or a bad setting) raises ValueError; an SQLite file that cannot be opened
    raises StoreMisconfigured. Network backends do not wait for their server here: it may come up later, and
    `ping` tells whether it answers (StoreUnavailable) and accepts the URL's credentials and database
    (StoreMisconfigured).
    """
    example = "sqlite:///data/microstate.db or redis://localhost:6379/0"
    backend = cast(_Backend, backend_class(BACKENDS, url, "store", example))
    return await backend.open(url, namespace, **options)


__all__ = [
    "ABSENT",
    "BACKENDS",
    "Capabilities",
    "Change",
    "ChangeKind",
    "CursorExpired",
    "IfMatch",
    "InvalidCursor",
    "Page",
    "PreconditionFailed",
    "Record",
    "Store",
    "StoreError",
    "StoreMisconfigured",
    "StoreUnavailable",
    "open_store",
]
