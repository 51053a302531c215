"""Fixtures for the contract gate tests."""

import shutil

import pytest


@pytest.fixture(scope="module")
def buf() -> str:
    path = shutil.which("buf")
    if path is None:
        pytest.fail("buf is not installed: pip install -r requirements/test.txt (buf-bin)")
    return path
