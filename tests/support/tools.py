"""External tools the tests run (redis-server, secantusd-py, buf, node): found, else skipped (CI: failed).

A tool is looked up on PATH and then beside the running interpreter, where pip put the console scripts of
requirements/test.txt (buf, secantusd-py). A fresh clone runs the tests with .venv/bin/python and a PATH that
knows nothing of .venv: looking on PATH alone skipped (or, under CI, failed) every suite that needs them.
Under CI a missing tool fails the test instead of skipping it: a missing install step cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def search_path() -> str:
    """PATH, then the folder of this interpreter's console scripts (a venv's bin/)."""
    return os.pathsep.join(filter(None, [os.environ.get("PATH", ""), sysconfig.get_path("scripts")]))


def find(command: str) -> str | None:
    return shutil.which(command, path=search_path())


def require(command: str, install_hint: str) -> str:
    """The path of `command`, or skip the test (fail under CI, which must not skip silently)."""
    executable = find(command)
    if executable is None:
        missing(f"{command} is not on PATH nor beside {sysconfig.get_path('scripts')} ({install_hint})")
    return executable


def missing(message: str) -> NoReturn:
    """Skip for a missing prerequisite; fail under CI."""
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is an error rather than a skip", pytrace=False)
    pytest.skip(message)
