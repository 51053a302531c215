"""Conformance: every backend takes the same namespaces."""

from __future__ import annotations

import pytest

from microstate.server.store import open_store
from tests.conformance.conftest import Backend


@pytest.mark.parametrize(
    "name", ["", "a b", "a:b", "a{b}", "a$b", "_lead", "-lead", ".lead", "é", "a/b", "x" * 101]
)
async def test_a_namespace_outside_the_shared_rule_is_refused(backend: Backend, name: str) -> None:
    with pytest.raises(ValueError, match="bad namespace"):
        await open_store(backend.url, name)


@pytest.mark.parametrize("name", ["a", "Profile.v2-test_9", "x" * 100])
async def test_a_namespace_inside_the_shared_rule_opens(backend: Backend, name: str) -> None:
    store = await open_store(backend.url, name)
    try:
        written = await store.put("k", b"v")
        assert await store.get("k") == written
    finally:
        await store.close()
