"""A coordinator process killed in the middle of an erase finishes it when run again, with no double effect.

The kill comes at a condition, not after a sleep: the session microstate has carried out its erase and holds
its answer back, so the dead coordinator never learnt of it — the hardest case for a resume. The subject
then signs in again, before the rerun: the rerun must not erase that new session.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
from pathlib import Path
from typing import Any

import grpc

from microstate.client.profile import v1
from microstate.client.session.v1 import SessionClient
from microstate.server.audit.keys import CHAIN_KEYS, PUBLIC_KEY
from microstate.server.audit.serving import checkpoint_file
from microstate.server.cli import main
from microstate.server.gdpr.bundle import verify_bundle
from microstate.server.gdpr.coordinator import ACTOR
from microstate.server.store import open_store
from microstate.subjects.v1 import subjects_pb2 as pb
from tests.client.conftest import fast_options
from tests.gdpr.harness import SUBJECT, serve_all
from tests.support.processes import MicrostateProcess, launch, until
from tests.support.unary_hooks import Behaviour, UnaryHook

WITHIN = 30.0


class HoldErase(UnaryHook):
    """Counts EraseSubject calls per microstate; the one named by `hold` answers only once released."""

    def __init__(self, hold: str) -> None:
        super().__init__(["/microstate.subjects.v1.SubjectService/EraseSubject"])
        self.hold = hold
        self.calls: collections.Counter[str] = collections.Counter()
        self.applied = asyncio.Event()
        self.release = asyncio.Event()

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = await handler(request, context)
            answer = response if isinstance(response, pb.EraseSubjectResponse) else None
            name = answer.microstate if answer else pb.EraseSubjectResponse.FromString(response).microstate
            self.calls[name] += 1
            if name == self.hold and not self.release.is_set():
                self.applied.set()
                await self.release.wait()
            return response

        return behaviour


def erase(workdir: Path, targets: dict[str, str]) -> MicrostateProcess:
    given = [f"--target={name}={target}" for name, target in targets.items()]
    return launch(["gdpr", "erase", SUBJECT, f"--state=sqlite:///{workdir / 'gdpr.db'}", *given], workdir)


async def stored_requests(workdir: Path) -> list[dict[str, Any]]:
    store = await open_store(f"sqlite:///{workdir / 'gdpr.db'}", "gdpr")
    try:
        page = await store.list("requests/")
        return [json.loads(record.value) for record in page.records]
    finally:
        await store.close()


async def test_a_coordinator_killed_mid_erase_finishes_on_rerun_without_double_effect(tmp_path: Path) -> None:
    hold = HoldErase("session")
    async with serve_all(tmp_path, interceptors=[hold]) as targets:
        profiles = v1.ProfileClient(options=fast_options(targets["profile"]))
        sessions = SessionClient(options=fast_options(targets["session"]))
        async with profiles, sessions:
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name="Ada"))
            for _ in range(2):
                await sessions.create(SUBJECT)

            first = erase(tmp_path, targets)
            try:
                await until(hold.applied.is_set, within=WITHIN, what="the session erase to be carried out")
                first.send(signal.SIGKILL)
                assert await asyncio.to_thread(first.wait) == -signal.SIGKILL
            finally:
                first.stop()
            [killed] = await stored_requests(tmp_path)
            assert killed["state"] == "OPEN" and killed["subject"] == SUBJECT
            assert {name: part["state"] for name, part in killed["microstates"].items()} == {
                "profile": "DONE",
                "session": "PENDING",
                "flags": "PENDING",
                "models": "PENDING",
                "telemetry": "PENDING",
            }

            again = await sessions.create(SUBJECT)  # the subject signs in again before the rerun
            hold.release.set()
            second = erase(tmp_path, targets)
            try:
                code = await asyncio.to_thread(second.wait, WITHIN)
            finally:
                second.stop()
            assert code == 0, second.describe()

            record = json.loads(second.output())
            parts = record["microstates"]
            assert record["request_id"] == killed["request_id"] and record["state"] == "DONE"
            assert parts["profile"] == killed["microstates"]["profile"]  # not asked again
            assert (parts["session"]["erased"], parts["session"]["replayed"]) == (2 + 2, True)
            assert hold.calls == {"profile": 1, "session": 2, "flags": 1, "models": 1, "telemetry": 1}
            assert (await sessions.validate(again.token)).value.user_id == SUBJECT  # no double effect
            [done] = await stored_requests(tmp_path)
            assert done["state"] == "DONE" and "subject" not in done
    await asyncio.to_thread(assert_steps_audited, tmp_path, done["request_id"])


def assert_steps_audited(workdir: Path, request_id: str) -> None:
    """Both runs' steps are in the coordinator's ledger, which verifies against its outside checkpoint."""
    url, audit_dir, export = (
        f"sqlite:///{workdir / 'gdpr.db'}",
        workdir / ".microstate" / "audit",
        workdir / "l",
    )
    assert main(["audit", "export", "gdpr", "--store", url, "--out", str(export), "--readable"]) == 0
    checkpoints = str(checkpoint_file(audit_dir, "gdpr"))
    keys = ["--public-key", str(audit_dir / PUBLIC_KEY), "--chain-keys", str(audit_dir / CHAIN_KEYS)]
    assert main(["audit", "verify", str(export), "--checkpoints", checkpoints, *keys]) == 0
    entries = [line["entry"] for line in map(json.loads, export.read_text().splitlines()) if "entry" in line]
    steps = [(entry["method"], entry["status"]) for entry in entries if entry["request_id"] == request_id]
    assert steps[0] == ("gdpr.erase/start", "STARTED") and steps[-1] == ("gdpr.erase/complete", "DONE")
    assert len(steps) == 1 + 5 + 1  # start, one result per microstate (the killed run saved profile's), end
    assert {entry["principal"] for entry in entries} == {ACTOR}
    assert SUBJECT not in export.read_text()  # pseudonymous subject references only


async def test_the_export_command_writes_a_bundle_its_manifest_vouches_for(tmp_path: Path) -> None:
    async with serve_all(tmp_path) as targets:
        async with v1.ProfileClient(options=fast_options(targets["profile"])) as profiles:
            await profiles.create(v1.Profile(user_id=SUBJECT, display_name="Ada"))
        given = [f"--target={name}={target}" for name, target in targets.items()]
        state = f"--state=sqlite:///{tmp_path / 'gdpr.db'}"
        export = launch(["gdpr", "export", SUBJECT, state, "--out=bundles", *given], tmp_path)
        bad = launch(["gdpr", "erase", SUBJECT, state, "--target=nosuch=127.0.0.1:1"], tmp_path)
        try:
            assert await asyncio.to_thread(export.wait, WITHIN) == 0, export.describe()
            assert await asyncio.to_thread(bad.wait, WITHIN) == 2, bad.describe()
        finally:
            export.stop()
            bad.stop()
        bundle = tmp_path / export.output().strip()
        assert verify_bundle(bundle) == []
        [line] = (bundle / "profile.jsonl").read_text().splitlines()
        assert json.loads(line)["data"]["name"]["display_name"] == "Ada"  # in the newest contract's form
        assert "no microstate nosuch" in bad.errors()
