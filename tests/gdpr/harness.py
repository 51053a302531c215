"""Every registered microstate served in this process on SQLite files under one directory, as `microstate up`
lays them out (receipts included), for the GDPR tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc

from microstate.server import registry
from microstate.server.kit import subjects
from microstate.server.session import KEY_FILE_ENV
from microstate.server.session.tokens import create_key_file
from microstate.server.store.roles import open_stores, role_urls
from tests.support.inproc import serve_in_process

MARKER = "Zq7GdprMarker"
"""In every value of the subject's data: a scan for it finds what erasure left behind."""
SUBJECT = "user-4711"


def session_key_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / "session.key"
    create_key_file(path)
    return {KEY_FILE_ENV: str(path)}


@contextlib.asynccontextmanager
async def serve_all(
    data_dir: Path, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> AsyncIterator[dict[str, str]]:
    """name -> target of every registered microstate (the session key must be in the environment)."""
    async with contextlib.AsyncExitStack() as stack:
        targets: dict[str, str] = {}
        for name in registry.names():
            microstate = registry.get(name)
            urls = role_urls(name, microstate.stores, None, {}, data_dir)
            stores = await open_stores(name, microstate.stores, urls)
            stores = await subjects.with_receipts(stores, name, urls[microstate.stores[0].name])
            stack.push_async_callback(stores.close)
            targets[name] = await stack.enter_async_context(
                serve_in_process(microstate, stores, interceptors=interceptors)
            )
        yield targets


def occurrences(folder: Path, needle: str) -> dict[str, int]:
    """Every file under `folder` holding `needle` (as UTF-8 bytes), with how often."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (count := path.read_bytes().count(needle.encode())):
            found[str(path.relative_to(folder))] = count
    return found
