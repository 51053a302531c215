"""The log store conformance suite's fixtures: every test here runs once per backend.

The backends are the records suite's (tests/conformance/conftest.py: `backend`, `namespace` and, for tests
of both roles, `store_factory` come from there), so a backend added there is tested as a log store too.
`log` is an opened log on a fresh namespace; `log_factory` opens more on the same backend and namespace
(another connection, a reopened log, a log with other options).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from microstate.server.store.log import LogStore, open_log
from tests.conformance.conftest import (  # noqa: F401  (backend, namespace, store_factory: fixtures)
    Backend,
    Opener,
    backend,
    namespace,
    opener,
    store_factory,
)

LogFactory = Opener[LogStore]


@pytest.fixture
async def log_factory(backend: Backend, namespace: str) -> AsyncIterator[LogFactory]:  # noqa: F811
    """Open another log on this test's backend and namespace; all are closed at teardown."""
    async with opener(open_log, backend.url, namespace) as open_another:
        yield open_another


@pytest.fixture
async def log(log_factory: LogFactory) -> LogStore:
    return await log_factory()
