"""Transfers cut by a server that crashes (SIGKILL) mid-stream and comes back on the same port: the SDK's
fetch and push continue within the same call, from what was kept, and end verified."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from microstate.client.models.v1 import ModelsClient
from microstate.models.v1 import models_pb2 as pb
from microstate.server.store.blobs import open_blobs
from tests.models.conftest import digest_of
from tests.models.test_client import CHUNK, Interrupted, write
from tests.support.processes import ServerProcess, running_server, start_server, until, wait_for
from tests.support.server_process import free_port

pytestmark = pytest.mark.process


class Crashing:
    """A models server on a fixed port that `crash_and_restart` kills and starts again (same store)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.flags = ("--store", f"sqlite:///{workdir / 'models.db'}", "--port", str(self.port))
        self.workdir = workdir
        self.server: ServerProcess = start_server("models", workdir, *self.flags, "--drain-seconds", "0")
        self.crashes = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def crash_and_restart(self) -> None:
        self.server.process.kill()
        self.server.process.wait()
        self.crashes += 1
        self.server = start_server("models", self.workdir, *self.flags, "--drain-seconds", "0")


@pytest.fixture
def crashing(tmp_path: Path) -> Iterator[Crashing]:
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = Crashing(workdir)
    try:
        yield server
    finally:
        server.server.stop()


async def test_a_download_cut_by_a_server_crash_resumes_in_the_same_fetch(
    crashing: Crashing, tmp_path: Path
) -> None:
    data = os.urandom(24 * CHUNK)
    async with ModelsClient(crashing.target, cache=tmp_path / "cache") as client:
        await client.push("m", write(tmp_path, data))

        def crash(done: int, total: int) -> None:
            if done >= 8 * CHUNK and not crashing.crashes:
                crashing.crash_and_restart()  # blocks this loop while the new server starts: fine here

        fetched = await client.fetch("m/1", progress=crash, timeout=60)
    assert crashing.crashes == 1
    assert fetched.path.read_bytes() == data
    assert fetched.downloaded - len(data) <= CHUNK  # bytes received twice: at most one chunk


async def test_an_upload_cut_by_a_server_crash_resumes_in_the_same_push(
    crashing: Crashing, tmp_path: Path
) -> None:
    data = os.urandom(24 * CHUNK)

    def crash(done: int, total: int) -> None:
        if done >= 12 * CHUNK and not crashing.crashes:
            crashing.crash_and_restart()

    async with ModelsClient(crashing.target, cache=tmp_path / "cache") as client:
        made = await client.push("m", write(tmp_path, data), progress=crash, timeout=60)
        assert crashing.crashes == 1
        assert made.version.version == 1 and 0 < made.bytes_received < len(data)  # resumed, not restarted
        fetched = await client.fetch("m/1")
    assert fetched.path.read_bytes() == data


async def test_a_server_collects_abandoned_uploads_and_orphan_blobs_when_it_starts(tmp_path: Path) -> None:
    flags = ("--store", f"sqlite:///{tmp_path / 'models.db'}", "--drain-seconds", "0")
    env = {"MICROSTATE_MODELS_UPLOAD_TTL": "1"}
    data = os.urandom(8 * CHUNK)
    with running_server("models", tmp_path, *flags, env=env) as server:
        async with ModelsClient(server.target, cache=tmp_path / "cache") as client:
            named = await client.push("m", write(tmp_path, b"named by version 1", "named.bin"))
            with pytest.raises(Interrupted):
                await client.push("m", write(tmp_path, data), upload_id="abandoned", progress=interrupt)
            await until(
                lambda: _held(client), within=30, what="the cut upload's bytes to be held by the server"
            )
        # What an upload leaves whose version record failed to commit: a published blob nothing names
        # (tests/models/test_orphans.py makes one with a real records-store failure).
        orphan = await _publish(tmp_path / "models-blobs", b"named by no version")
        abandoned_at = time.time()
    wait_for(lambda: time.time() - abandoned_at > 1.5, within=10, what="the upload TTL to pass")
    with running_server("models", tmp_path, *flags, env=env) as server:
        async with ModelsClient(server.target, cache=tmp_path / "cache") as client:

            async def collected() -> bool:
                status = await client.query_upload("abandoned")
                return status.state == pb.VERSION_STATE_UNSPECIFIED

            await until(collected, within=30, what="the abandoned upload to be collected")
            blobs = tmp_path / "models-blobs" / "models" / "blobs" / "sha256"
            wait_for(lambda: not (blobs / orphan[7:9] / orphan[7:]).exists(), within=30, what="the sweep")
            assert (blobs / named.version.digest[7:9] / named.version.digest[7:]).exists()
    assert not [
        p for p in (tmp_path / "models-blobs" / "models" / "uploads").iterdir() if not p.name.startswith(".")
    ]


async def _publish(directory: Path, data: bytes) -> str:
    """Commit `data` to the server's blob directory, as an upload does before writing its version."""
    blobs = await open_blobs(f"file://{directory}", "models")
    try:
        await blobs.begin("orphan")
        await blobs.append("orphan", 0, data)
        return (await blobs.commit("orphan", digest_of(data), len(data))).digest
    finally:
        await blobs.close()


def interrupt(done: int, total: int) -> None:
    if done >= 4 * CHUNK:
        raise Interrupted


async def _held(client: ModelsClient) -> bool:
    return (await client.query_upload("abandoned")).committed_offset > 0
