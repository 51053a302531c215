"""The flags SDK against a real `microstate serve flags` process: killed (SIGKILL), the clients keep
evaluating from their replica with reason STALE and a new worker process starts from the saved rule set;
frozen (SIGSTOP), its silent stream shows as STALE within two heartbeat intervals; and the sync twin serves
plain threads while updates stream in."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from microstate.client.flags import (
    EventKind,
    FlagsClient,
    Reason,
    RuleSetEvent,
    RuleSetState,
    SyncFlagsClient,
)
from tests.client.flags_harness import WITHIN, bool_flag, model_flag, options
from tests.support.processes import run_python, running_server, until, wait_for

pytestmark = pytest.mark.process

ENTERPRISE = {"targetingKey": "user-1", "plan": "enterprise", "seats": 80}

WORKER = """
import json, sys, time
from microstate.client.flags import SyncFlagsClient
from tests.client.flags_harness import options
began = time.monotonic()
with SyncFlagsClient(options=options(sys.argv[1]), rule_set_path=sys.argv[2]) as flags:
    status = flags.start(wait=10)
    started = time.monotonic() - began
    context = {"targetingKey": "user-1", "plan": "enterprise", "seats": 80}
    details = flags.evaluate_string_details("model", "x", context)
    print(json.dumps({"state": status.state.value, "revision": status.revision, "value": details.value,
                      "reason": details.reason.name, "stale_age": details.stale_age, "started": started}))
"""


async def test_killed_server_clients_go_on_and_a_new_worker_starts_from_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "flags.rules")
    with running_server("flags", tmp_path, "--store", f"sqlite:///{tmp_path / 'flags.db'}") as server:
        async with FlagsClient(options=options(server.target), rule_set_path=path) as client:
            await client.create(model_flag())
            assert (await client.start(wait=WITHIN)).state is RuleSetState.READY
            revision = client.rule_set_status().revision
            await until(lambda: Path(path).exists(), within=WITHIN, what="the rule set to be saved")
            events: list[RuleSetEvent] = []
            client.add_listener(events.append)

            server.process.kill()
            server.process.wait()
            await until(
                lambda: client.evaluate_string_details("model", "x", ENTERPRISE).reason is Reason.STALE,
                within=WITHIN,
                what="evaluations to turn STALE",
            )
            details = client.evaluate_string_details("model", "x", ENTERPRISE)
            assert (details.value, details.revision) == ("large", revision)
            assert client.evaluate_string("model", "x", ENTERPRISE) == "large"
            assert [event.kind for event in events] == [EventKind.STALE]

            code, out, err = await run_python(WORKER, server.target, path, within=60)
            assert code == 0, err
            worker = json.loads(out.strip().splitlines()[-1])
            assert worker["state"] == "stale" and worker["revision"] == revision
            assert (worker["value"], worker["reason"]) == ("large", "STALE")
            assert 0 <= worker["stale_age"] < 60 and worker["started"] < 10  # did not wait out the limit


def test_frozen_server_shows_stale_within_two_heartbeats(tmp_path: Path) -> None:
    with (
        running_server("flags", tmp_path, "--store", f"sqlite:///{tmp_path / 'flags.db'}") as server,
        SyncFlagsClient(options=options(server.target)) as client,
    ):
        client.create(bool_flag("kill-switch", False))
        status = client.start(wait=WITHIN)
        assert status.state is RuleSetState.READY
        wait_for(lambda: client.rule_set_status().sync.heartbeats > 0, within=WITHIN, what="a heartbeat")
        interval = client.rule_set_status().heartbeat_interval
        server.send(signal.SIGSTOP)  # the TCP connection stays up; the stream just falls silent
        try:
            frozen = time.monotonic()
            wait_for(
                lambda: client.evaluate_bool_details("kill-switch", True).reason is Reason.STALE,
                within=2 * interval + WITHIN,
                what="evaluations to turn STALE",
            )
            assert time.monotonic() - frozen <= 2 * interval + 1.0
            assert client.evaluate_bool("kill-switch", True) is False
            wait_for(
                lambda: client.rule_set_status().state is RuleSetState.STALE,
                within=WITHIN,
                what="STALE state",
            )
        finally:
            server.send(signal.SIGCONT)
        wait_for(
            lambda: client.evaluate_bool_details("kill-switch", True).reason is Reason.STATIC,
            within=2 * interval + WITHIN,
            what="the stream to speak again",
        )


def test_sync_twin_serves_plain_threads_while_updates_stream_in(tmp_path: Path) -> None:
    with (
        running_server("flags", tmp_path, "--store", f"sqlite:///{tmp_path / 'flags.db'}") as server,
        SyncFlagsClient(options=options(server.target)) as admin,
        SyncFlagsClient(options=options(server.target)) as client,
    ):
        admin.create(model_flag())
        admin.create(bool_flag("launch", False))
        assert client.start(wait=WITHIN).state is RuleSetState.READY
        stop = threading.Event()
        seen: list[set[bool]] = [set() for _ in range(4)]
        wrong: list[str] = []

        def evaluate(slot: int) -> None:
            while not stop.is_set():
                seen[slot].add(client.evaluate_bool("launch", False))
                if (value := client.evaluate_string("model", "x", ENTERPRISE)) != "large":
                    wrong.append(value)

        threads = [threading.Thread(target=evaluate, args=(slot,)) for slot in range(4)]
        for thread in threads:
            thread.start()
        try:
            updated = admin.update(bool_flag("launch", True), ["default_variant"])
            wait_for(
                lambda: all(True in values for values in seen),
                within=WITHIN,
                what="every thread to see it",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not wrong and client.rule_set_status().revision == updated.flag.revision
