"""`backend` for a slice's own suite: the conformance suite's backends, all but SLICE_BACKENDS under `slow`.

A slice's conftest imports `slice_backend` in place of the conformance suite's `backend` (it registers under
that name, so `store` and `store_factory` follow it). Kept out of tests/conformance/conftest.py, where a
second fixture named `backend` would replace the conformance suite's own.
"""

from __future__ import annotations

import pytest

from tests.conformance.conftest import BACKENDS, Backend, backend_params


@pytest.fixture(name="backend", params=backend_params(slice_sample=True))
def slice_backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)
