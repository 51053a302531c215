"""Store roles: which URL each role of a microstate gets, and that health follows every one of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from microstate.server.config import ConfigError, ServerConfig
from microstate.server.profile import MICROSTATE
from microstate.server.runtime import Runtime
from microstate.server.serve import store_urls
from microstate.server.store.roles import (
    RECORDS,
    StoreKind,
    StoreRole,
    UnusableURL,
    open_stores,
    parse_role_urls,
    role_urls,
)
from tests.support.server_process import free_port

LOG, BLOBS, AUDIT = (
    StoreRole("log", StoreKind.LOG),
    StoreRole("blobs", StoreKind.BLOBS),
    StoreRole("audit", StoreKind.RECORDS),
)
ROLES = (RECORDS, LOG, BLOBS)


def test_the_primary_role_takes_store_and_the_others_follow_it_where_their_kind_can() -> None:
    data = Path("/srv/data")
    urls = role_urls("models", ROLES, "redis://cache:6379/2", {}, data)
    assert urls == {
        "records": "redis://cache:6379/2",
        "log": "redis://cache:6379/2",
        "blobs": "file:///srv/data/models-blobs",
    }
    defaults = role_urls("models", ROLES, None, {}, data)
    assert defaults == {
        "records": "sqlite:////srv/data/models.db",
        "log": "sqlite:////srv/data/models-log.db",
        "blobs": "file:///srv/data/models-blobs",
    }
    given = role_urls("models", ROLES, None, {"log": "mongodb://m/ms", "records": "sqlite:///r.db"}, data)
    assert given["records"] == "sqlite:///r.db" and given["log"] == "mongodb://m/ms"


def test_role_urls_are_parsed_strictly_and_must_name_declared_roles() -> None:
    assert parse_role_urls(" log=redis://h:1/0?retention=5  blobs=file:///b ") == {
        "log": "redis://h:1/0?retention=5",
        "blobs": "file:///b",
    }
    for bad in ("log", "=redis://h", "log=", "log=a log=b", "9x=sqlite:///a"):
        with pytest.raises(ValueError):
            parse_role_urls(bad)
    with pytest.raises(ValueError, match="profile has no store role audit; its roles: records"):
        role_urls("profile", MICROSTATE.stores, None, {"audit": "sqlite:///a.db"}, Path("."))
    with pytest.raises(ConfigError, match="--role-stores: profile has no store role audit"):
        store_urls(MICROSTATE, ServerConfig(role_stores="audit=sqlite:///a.db"))


async def test_health_follows_every_role_and_an_unusable_url_names_its_role(tmp_path: Path) -> None:
    two_roles = dataclasses.replace(MICROSTATE, stores=(RECORDS, AUDIT))
    config = ServerConfig(port=0, drain_seconds=0.0, grace_seconds=0.0)
    for audit_url, serving in (
        (f"sqlite:///{tmp_path / 'audit.db'}", True),
        (f"redis://127.0.0.1:{free_port()}/0", False),  # nothing listens: opening succeeds, pings fail
    ):
        urls = {"records": f"sqlite:///{tmp_path / 'records.db'}", "audit": audit_url}
        stores = await open_stores("profile", two_roles.stores, urls)
        runtime = Runtime(two_roles, stores, config)
        try:
            await runtime.start()
            assert await runtime.check_store() is serving
        finally:
            await runtime.drain()
            await stores.close()
    with pytest.raises(UnusableURL, match="unsupported store URL") as caught:
        await open_stores(
            "profile", two_roles.stores, {"records": f"sqlite:///{tmp_path / 'r.db'}", "audit": "x://"}
        )
    assert caught.value.role == AUDIT
