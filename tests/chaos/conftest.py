"""Chaos runs: real processes killed and restarted. Each scenario has a short test in the default run and
a long one (marker `chaos`) that repeats it and records how long recovery took.

`pytest -m chaos tests/chaos` prints the recovery times (median and max per measure) at the end of the run
and writes them, with the machine they were measured on, to `chaos-recovery.json` in pytest's base temp
directory (the path is printed), or to the file named by MICROSTATE_CHAOS_REPORT. docs/operations.md quotes
them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from tests.chaos import recovery

REPORT_ENV = "MICROSTATE_CHAOS_REPORT"


def _machine() -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _summary() -> dict[str, dict[str, float]]:
    by_measure: dict[str, list[float]] = defaultdict(list)
    for name, seconds in recovery.MEASURED:
        by_measure[name].append(seconds)
    return {
        name: {"runs": len(times), "median_s": statistics.median(times), "max_s": max(times)}
        for name, times in sorted(by_measure.items())
    }


@pytest.fixture(scope="session", autouse=True)
def _report_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    recovery.REPORT_DIR = tmp_path_factory.getbasetemp()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not recovery.MEASURED:
        return
    summary = _summary()
    report = {"machine": _machine(), "recovery_seconds": summary, "counts": recovery.COUNTED}
    path = Path(os.environ.get(REPORT_ENV) or recovery.REPORT_DIR / "chaos-recovery.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    terminalreporter.section("chaos: measured times")
    terminalreporter.write_line("| measure | runs | median (s) | max (s) |")
    terminalreporter.write_line("|---|---|---|---|")
    for name, row in summary.items():
        terminalreporter.write_line(
            f"| {name} | {row['runs']} | {row['median_s']:.2f} | {row['max_s']:.2f} |"
        )
    for name, values in sorted(recovery.COUNTED.items()):
        terminalreporter.write_line(f"{name}: {values}")
    terminalreporter.write_line(f"written to {path}")
