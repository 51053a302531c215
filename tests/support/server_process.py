"""A database server as a test subprocess: one port, a private data dir, start / stop / kill / restart.

Subclasses say how to launch the server and how to ask it whether it is ready; the life cycle is shared.
"""

from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

READY_POLL = 0.02
"""Seconds between readiness probes (the interval of a wait with a deadline, not a synchronisation)."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it, so parallel runs don't collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server subprocess on 127.0.0.1, on a port chosen once, with data and log kept in `data_dir`."""

    name: ClassVar[str] = "server"
    start_timeout: ClassVar[float] = 10.0
    stop_timeout: ClassVar[float] = 10.0

    def __init__(self, executable: str, data_dir: Path, port: int | None = None) -> None:
        self.executable = executable
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        # Backstop for exits that skip fixture teardown. Not PR_SET_PDEATHSIG: that fires when the *thread*
        # that started the server ends, and tests restart servers from worker threads (asyncio.to_thread).
        atexit.register(self.kill)

    def _launch(self) -> subprocess.Popen[bytes]:
        """Start the server process (without waiting for it)."""
        raise NotImplementedError

    def _answers(self) -> bool:
        """True once the server answers; each probe must itself be bounded in time."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The running server's process id (to SIGSTOP it, say)."""
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self) -> None:
        """Start (again) on the same port and data dir; return once the server answers."""
        if self.running:
            return
        self._process = self._launch()
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited early ({self._process.returncode}): {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"{self.name} did not answer within {self.start_timeout}s: {self._log_tail()}"
                )
            time.sleep(READY_POLL)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a crash."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
