"""`microstate up`: every known microstate, each in its own `microstate serve` process, on embedded SQLite.

Children start in their own session, so a Ctrl-C at the terminal reaches only this supervisor, which then
drains them in the normal way (SIGTERM, wait, SIGKILL only after a timeout). Each child writes a ready file
with the port it bound (ports may be 0 = any free port) and its logs to <data-dir>/logs/<name>.log.
Should `up` itself be SIGKILLed, its children still drain and exit (see supervision.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import microstate
from microstate.server import probe, registry, supervision
from microstate.server.config import ServerConfig, to_flags
from microstate.server.runtime import Endpoint
from microstate.server.serve import StopSignals, default_store_url
from microstate.server.table import format_table

log = logging.getLogger(__name__)

FORWARDED_SETTINGS = ("host", "drain_seconds", "grace_seconds", "log_level")
"""Settings `up` hands to every child; other MICROSTATE_* settings reach them through the environment."""
STOP_MARGIN_SECONDS = 10.0
"""How long past drain + grace a child may take to exit before it is killed."""
LOG_TAIL_LINES = 40
T = TypeVar("T")


class ChildFailed(Exception):
    def __init__(self, child: Child, reason: str) -> None:
        super().__init__(f"{child.name}: {reason}")
        self.child = child


@dataclass
class Child:
    name: str
    port: int
    store: str
    data_dir: Path
    process: asyncio.subprocess.Process | None = None
    endpoint: Endpoint | None = None
    health: str = "STARTING"
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "run" / f"{self.name}.json"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        return "(no log)"

    async def spawn(self, config: ServerConfig) -> None:
        self.ready_file.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        command = [sys.executable, "-m", "microstate.server", "serve", self.name]
        placement = ["--store", self.store, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        reporting = ["--ready-file", str(self.ready_file), "--log-format", "json"]
        argv = [*command, *placement, *reporting, *to_flags(config, FORWARDED_SETTINGS)]
        prepare = registry.get(self.name).prepare
        settings = prepare(self.data_dir) if prepare is not None else {}
        self.process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            env={**_child_env(), **settings},
            start_new_session=True,
        )

    async def wait_ready(self, deadline: float) -> None:
        """Until the child wrote its port and reports SERVING; ChildFailed if it exits or time runs out."""
        while not self.ready_file.exists():
            self._fail_if_exited()
            if time.monotonic() >= deadline:
                raise ChildFailed(self, "did not start listening in time")
            await asyncio.sleep(0.05)  # polling a file; the loop ends on the condition or the deadline
        ready = json.loads(self.ready_file.read_text())
        self.endpoint = Endpoint(ready["host"], int(ready["port"]))
        self.health = await probe.wait_until(self.endpoint.target, "SERVING", deadline=deadline)
        self._fail_if_exited()
        if self.health != "SERVING":
            raise ChildFailed(self, f"health is {self.health}, not SERVING")

    def _fail_if_exited(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise ChildFailed(self, f"exited with code {self.process.returncode}")

    async def stop(self, patience: float) -> int:
        """SIGTERM, wait up to `patience` seconds, then SIGKILL; returns the exit code."""
        process = self.process
        if process is None:
            return 0
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), patience)
            except TimeoutError:
                log.error(
                    "child did not stop in time; killing it", extra={"child": self.name, "pid": process.pid}
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_file is not None:
            self._log_file.close()
        self.ready_file.unlink(missing_ok=True)
        return process.returncode if process.returncode is not None else -1


def _child_env() -> dict[str, str]:
    """Our environment, with the folders of our `microstate` namespace first (children run the same code)
    and our pid as their supervisor (they stop if we die)."""
    env = supervision.child_env(dict(os.environ))
    roots = [str(Path(folder).parent) for folder in microstate.__path__]
    env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, [env.get("PYTHONPATH")])])
    return env


def plan(names: list[str], config: ServerConfig, base_port: int | None) -> list[Child]:
    """One child per microstate, on port base_port + index (base 0: any free port), else its default port."""
    data_dir = config.data_dir.resolve()
    children = []
    for index, name in enumerate(names):
        microstate = registry.get(name)
        # base 0: every child picks a free port
        port = microstate.default_port if base_port is None else base_port and base_port + index
        children.append(Child(name, port, default_store_url(microstate, data_dir), data_dir))
    return children


def render_table(children: list[Child]) -> str:
    rows = [("NAME", "ENDPOINT", "STORE", "HEALTH")]
    rows += [(child.name, str(child.endpoint or "-"), child.store, child.health) for child in children]
    return format_table(rows)


async def _stop_all(children: list[Child], config: ServerConfig, signals: StopSignals) -> bool:
    """Stop all children at once (a second Ctrl-C re-sends SIGTERM to skip the drain); True if all exit 0."""
    patience = config.drain_seconds + config.grace_seconds + STOP_MARGIN_SECONDS

    async def hurry() -> None:
        await signals.hurry.wait()
        for child in children:
            if child.running and child.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)

    hurrying = asyncio.create_task(hurry())
    try:
        codes = await asyncio.gather(*(child.stop(patience) for child in children))
    finally:
        hurrying.cancel()
    for child, code in zip(children, codes, strict=True):
        log.info("child stopped", extra={"child": child.name, "exit_code": code})
    return all(code == 0 for code in codes)


async def _first_exit(children: list[Child]) -> Child:
    waits = {asyncio.ensure_future(c.process.wait()): c for c in children if c.process is not None}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in waits:
            pending.cancel()
    return waits[done.pop()]


async def _start_all(children: list[Child], config: ServerConfig, start_timeout: float) -> list[Child]:
    """Spawn every child, then wait until all are SERVING; the first ChildFailed cancels the other waits."""
    for child in children:
        await child.spawn(config)
        log.info("child started", extra={"child": child.name, "pid": child.process and child.process.pid})
    deadline = time.monotonic() + start_timeout
    try:
        async with asyncio.TaskGroup() as group:
            for child in children:
                group.create_task(child.wait_ready(deadline))
    except BaseExceptionGroup as group:
        # Not `except*`: before Python 3.11.4 an exception raised there is wrapped in a new group.
        failed, _ = group.split(ChildFailed)
        if failed is None:
            raise
        raise failed.exceptions[0] from None
    return children


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None (and `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


OPEN_NOTICE = (
    "no authentication and no TLS: any process on this machine may call every method"
    " (for a laptop; see README, Security, to serve a network)"
)


async def up(
    config: ServerConfig,
    *,
    names: list[str],
    base_port: int | None,
    start_timeout: float,
    out: TextIO = sys.stdout,
) -> int:
    """Run `names` until a stop signal; 0 when all started and stopped cleanly, 1 otherwise."""
    children = plan(names, config, base_port)
    signals = StopSignals()
    with signals.installed():
        supervision.exit_with_parent()  # `up` under a supervisor of its own (a test run) goes when it goes
        try:
            if await _unless_stopped(_start_all(children, config, start_timeout), signals.stop) is not None:
                print(render_table(children), file=out)
                print(f"{len(children)} microstate(s) serving; Ctrl-C stops them all", file=out, flush=True)
                print(OPEN_NOTICE, file=out, flush=True)
                exited = await _unless_stopped(_first_exit(children), signals.stop)
                if exited is not None:
                    code = exited.process.returncode if exited.process else None
                    raise ChildFailed(exited, f"exited unexpectedly with code {code}")
        except ChildFailed as failure:
            log.error(
                "a microstate failed; stopping the others",
                extra={"child": failure.child.name, "error": str(failure)},
            )
            tail = f"--- last lines of {failure.child.log_path} ---\n{failure.child.log_tail()}"
            print(f"{failure}\n{tail}", file=sys.stderr, flush=True)
            await _stop_all(children, config, signals)
            return 1
        except BaseException:
            await _stop_all(children, config, signals)
            raise
        log.info("stopping all microstates", extra={"phase": "stop", "children": len(children)})
        clean = await _stop_all(children, config, signals)
    return 0 if clean else 1
