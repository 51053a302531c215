"""The append-only log role: the `LogStore` protocol (log/base.py) and `open_log`, which picks the backend
by URL scheme, as `open_store` does for records; backends are imported only when their scheme is used.

A log lives next to the records store of the same URL and namespace without touching it (its own tables,
keys and collections), so one URL can serve both roles.
"""

from __future__ import annotations

import importlib.util
from typing import Any, cast

from microstate.server.store import BACKENDS
from microstate.server.store._shared import backend_class
from microstate.server.store.base import CursorExpired, InvalidCursor, StoreError, StoreUnavailable
from microstate.server.store.log.base import (
    DEFAULT_DEDUPE_WINDOW,
    Appended,
    LogCapabilities,
    LogEntry,
    LogPage,
    LogStore,
)


def _log_backend(records_backend: str) -> str:
    """The log class of a records backend's module: "….redis:RedisStore" -> "….log.redis:RedisLog",
    "….redis_cluster:RedisClusterStore" -> "….log.redis_cluster:RedisClusterLog"."""
    module = records_backend.partition(":")[0].rpartition(".")[2]
    return f"microstate.server.store.log.{module}:{module.title().replace('_', '')}Log"


LOG_BACKENDS: dict[str, str] = {
    scheme: _log_backend(target)
    for scheme, target in BACKENDS.items()
    if importlib.util.find_spec(_log_backend(target).partition(":")[0]) is not None
}
"""URL scheme -> "module:class": the records store's schemes whose backend has a log module (all of them),
each served by it; each class has `async classmethod open(url, namespace, **options) ->
LogStore`. A scheme left out is refused by `open_log` as unsupported, and a microstate's log role does not
follow a primary URL of that scheme (roles.py)."""


async def open_log(url: str, namespace: str, **options: Any) -> LogStore:
    """Open the log `namespace` on the store at `url`, creating it if needed.

    URLs as for `open_store`: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`,
    `redis://host:port/db`, `rediss://…`, `redis+cluster://host1:port,host2:port`, `mongodb://…`,
    `mongodb+srv://…`. `options` go to the backend's
    `open`: every backend takes `dedupe_window` and `follow_outage_budget` (seconds); see each backend for
    the rest. An unknown scheme raises ValueError; an unreachable backend raises StoreUnavailable (Redis: at
    the first call).
    """
    backend = backend_class(
        LOG_BACKENDS, url, "log store", "sqlite:///data/microstate.db or redis://localhost:6379/0"
    )
    return cast(LogStore, await backend.open(url, namespace, **options))


__all__ = [
    "DEFAULT_DEDUPE_WINDOW",
    "LOG_BACKENDS",
    "Appended",
    "CursorExpired",
    "InvalidCursor",
    "LogCapabilities",
    "LogEntry",
    "LogPage",
    "LogStore",
    "StoreError",
    "StoreUnavailable",
    "open_log",
]
