"""`open_store` picks the backend by URL scheme (not run per backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from microstate.server.store import Store, open_store
from microstate.server.store.sqlite import SqliteStore


@pytest.mark.parametrize("url", ["ftp://host/x", "postgres://localhost/db", "data/profile.db", ""])
async def test_an_unknown_scheme_is_a_clear_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        await open_store(url, "ns")


async def test_sqlite_urls_open_an_sqlite_store_at_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"

    store = await open_store(f"sqlite:///{path}", "ns")
    try:
        assert isinstance(store, SqliteStore)
        assert isinstance(store, Store)
        await store.put("k", b"v")
    finally:
        await store.close()

    assert path.is_file()


async def test_sqlite_urls_open_an_sqlite_store_at_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///relative.db", "ns")
    await store.close()

    assert (tmp_path / "relative.db").is_file()
