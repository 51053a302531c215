"""Every GDPR test serves the session microstate, which needs its server key in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gdpr.harness import session_key_env


@pytest.fixture(autouse=True)
def session_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in session_key_env(tmp_path).items():
        monkeypatch.setenv(name, value)
