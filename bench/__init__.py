"""Microstate benchmarks: `python -m bench` (see bench/RESULTS.md for the latest table and how to read it).

Every figure is a ratio against a baseline measured in the same run, interleaved round by round, because
absolute numbers on a shared 2-core machine mean little. Benchmarks are not part of the test suite.

Importing this package puts the repository's source folders on sys.path (as pytest's `pythonpath` does), so
`python -m bench` works from the repository root without installing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def source_folders(checkout: Path) -> list[Path]:
    """What goes on sys.path (or PYTHONPATH) to run `checkout`'s code, as pytest's `pythonpath` does."""
    return [checkout / "generated", checkout / "clients", checkout / "servers", checkout]


def use_source(checkout: Path) -> None:
    """Import the SDK, the servers and the test helpers from `checkout` (servers started by the helpers
    then run from it too, as tests.support.processes takes its folders from its own location)."""
    for folder in reversed(source_folders(checkout)):
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))


use_source(REPO)
