"""Fixtures for the contract gate tests."""

import pytest

from tests.support import tools


@pytest.fixture(scope="module")
def buf() -> str:
    return tools.require("buf", "pip install -r requirements/test.txt installs buf-bin")
