"""The file backend's own promises: its URL forms, its layout, a vanished directory, crash leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from microstate.server.store import StoreUnavailable
from microstate.server.store.blobs import UploadNotFound, open_blobs
from microstate.server.store.blobs.file import LEFTOVER_GRACE
from tests.conformance_blobs.helpers import digest_of, payload, read_all, upload


async def test_an_absolute_url_keeps_blobs_read_only_under_their_digest(tmp_path: Path) -> None:
    store = await open_blobs(f"file://{tmp_path}/blobs", "ns")
    data = payload(1000)

    info = await upload(store, "u1", data)

    hex_digest = info.digest.removeprefix("sha256:")
    path = tmp_path / "blobs" / "ns" / "blobs" / "sha256" / hex_digest[:2] / hex_digest
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((tmp_path / "blobs" / "ns" / "uploads").iterdir()) == []


async def test_a_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = await open_blobs("file://data/blobs?chunk_size=10", "ns")

    info = await upload(store, "u1", b"x" * 25)

    assert (tmp_path / "data" / "blobs" / "ns" / "blobs").is_dir()
    assert [len(chunk) async for chunk in store.read(info.digest)] == [10, 10, 5]


@pytest.mark.parametrize(
    "url", ["file://", "file:///x#fragment", "file:///x?retention=5", "file:///x?chunk_size=0", "sqlite:///x"]
)
async def test_a_bad_file_url_is_a_value_error(url: str) -> None:
    from microstate.server.store.blobs.file import FileBlobs

    with pytest.raises(ValueError):
        await FileBlobs.open(url, "ns")


async def test_a_location_through_a_regular_file_is_unavailable_at_open(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")

    with pytest.raises(StoreUnavailable):
        await open_blobs(f"file://{tmp_path}/a-file/blobs", "ns")


async def test_a_vanished_directory_is_unavailable_not_empty(tmp_path: Path) -> None:
    """An unmounted volume must not read as a store that holds nothing."""
    store = await open_blobs(f"file://{tmp_path}/blobs", "ns")
    info = await upload(store, "u1", b"data")
    await store.begin("u2")
    (tmp_path / "blobs").rename(tmp_path / "elsewhere")

    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.stat(info.digest)
    with pytest.raises(StoreUnavailable):
        await read_all(store, info.digest)
    with pytest.raises(StoreUnavailable):
        await store.offset("u2")
    with pytest.raises(StoreUnavailable):
        await store.begin("u3")


async def test_a_commit_that_cannot_publish_gives_the_upload_back(tmp_path: Path) -> None:
    store = await open_blobs(f"file://{tmp_path}", "ns")
    data = payload(1000)
    hex_digest = digest_of(data).removeprefix("sha256:")
    blocker = tmp_path / "ns" / "blobs" / "sha256" / hex_digest[:2]
    blocker.write_bytes(b"")  # a file where the fan-out directory should go: publishing fails
    await store.begin("u1")
    await store.append("u1", 0, data)

    with pytest.raises(StoreUnavailable):
        await store.commit("u1", digest_of(data), len(data))

    assert await store.offset("u1") == len(data)
    blocker.unlink()
    info = await store.commit("u1", digest_of(data), len(data))
    assert await read_all(store, info.digest) == data
    assert list((tmp_path / "ns" / "uploads").iterdir()) == []


async def test_collect_removes_crash_leftovers_only_after_the_grace(tmp_path: Path) -> None:
    store = await open_blobs(f"file://{tmp_path}", "ns")
    uploads = tmp_path / "ns" / "uploads"
    for name in (".commit-old", ".commit-recent"):
        (uploads / name).mkdir()
        (uploads / name / "data").write_bytes(b"left over by a crash")
    (uploads / ".ping-old").write_bytes(b"ping")
    old = os.stat(uploads).st_mtime - LEFTOVER_GRACE - 60
    for name in (".commit-old", ".ping-old"):
        os.utime(uploads / name, (old, old))

    assert await store.collect(older_than=0) == 0  # leftovers are not uploads

    assert sorted(path.name for path in uploads.iterdir()) == [".commit-recent"]
    with pytest.raises(UploadNotFound):
        await store.offset(".commit-recent".removeprefix("."))
