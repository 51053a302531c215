"""Conformance: an unusable location fails fast and clearly; bad URLs and namespaces are refused."""

from __future__ import annotations

import asyncio

import pytest

from microstate.server.store import StoreUnavailable
from microstate.server.store.blobs import open_blobs
from tests.conformance_blobs.conftest import BlobBackend
from tests.conformance_blobs.helpers import digest_of

FAIL_FAST = 3.0
"""Seconds within which an unusable location must be reported (not hung on)."""


async def test_an_unusable_location_fails_fast_with_store_unavailable(
    blob_backend: BlobBackend, namespace: str
) -> None:
    async with asyncio.timeout(FAIL_FAST):
        with pytest.raises(StoreUnavailable):
            # Backends may connect lazily, so the failure may come from open or from the first call.
            store = await open_blobs(blob_backend.dead_url, namespace)
            try:
                await store.ping()
                await store.stat(digest_of(b"x"))
            finally:
                await store.close()


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "..", "a" * 101])
async def test_a_bad_namespace_is_a_value_error(blob_backend: BlobBackend, bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await open_blobs(blob_backend.url, bad)


async def test_an_unknown_scheme_is_a_value_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="file"):
        await open_blobs("s4://bucket/blobs", "ns")
