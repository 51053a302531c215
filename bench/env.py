"""Where things run (CPU pinning) and what they run on (versions), reported with every result.

On a machine with at least two cores the servers under test and their stores share core 0 and the load
generator (this process, and h2load, which inherits its affinity) gets core 1, so neither side steals the
other's CPU. Pinning is applied to every thread of a process after it started (`pin`), which works for
processes we do not launch ourselves (SecantusDB, redis-server) as well as for ours.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Cores:
    server: frozenset[int]
    """Cores of every server under test and its store."""
    client: frozenset[int]
    """Cores of the load generator (this process and its h2load children)."""

    @property
    def pinned(self) -> bool:
        return self.server != self.client

    def describe(self) -> str:
        if not self.pinned:
            return f"not pinned (only {len(self.server)} core(s) available)"
        return f"servers+stores on cores {sorted(self.server)}, load generator on cores {sorted(self.client)}"


def choose_cores() -> Cores:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return Cores(frozenset(available), frozenset(available))
    return Cores(frozenset(available[:1]), frozenset(available[1:2]))


def pin_self(cores: Cores) -> None:
    """Pin this process (call before grpc starts its threads: new threads inherit the mask)."""
    os.sched_setaffinity(0, cores.client)


def pin(pid: int, cores: frozenset[int]) -> None:
    """Pin every thread of `pid` (threads it starts later inherit the mask of the thread starting them)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cores)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(command: list[str], pattern: str) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    found = re.search(pattern, output)
    return found.group(1) if found else output.strip()[:40]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "redis-server": _tool_version(["redis-server", "--version"], r"v=(\S+)"),
        "pymongo": _version("pymongo"),
        "secantusdb": _version("SecantusDB"),
        "aiosqlite": _version("aiosqlite"),
        "h2load": _tool_version(["h2load", "--version"], r"nghttp2/(\S+)"),
        "py-spy": _tool_version(["py-spy", "--version"], r"py-spy (\S+)"),
        "cpu": cpu_model(),
        "cpus": str(os.cpu_count()),
        "kernel": platform.release(),
    }
