"""Fixtures of the security tests: a token issuer, a certificate authority, and any registered microstate
served in this process by the real Runtime with the settings a test asks for."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from microstate.client import TlsOptions
from microstate.server import registry
from microstate.server.config import ServerConfig
from microstate.server.registry import Microstate
from microstate.server.runtime import Runtime
from microstate.server.serve import store_urls
from microstate.server.store.roles import open_stores
from tests.support.issuer import Issuer

Serve = Callable[..., AbstractAsyncContextManager[Runtime]]
"""serve(name or Microstate, **settings): the microstate served on a free loopback port with these settings
(ServerConfig fields)."""


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(tmp_path)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    @asynccontextmanager
    async def serving(name: str | Microstate, **settings: Any) -> AsyncIterator[Runtime]:
        microstate = registry.get(name) if isinstance(name, str) else name
        config = ServerConfig(port=0, drain_seconds=0.0, grace_seconds=0.0, data_dir=tmp_path, **settings)
        # What `microstate up` prepares for it (a session key file), in the environment its attach reads.
        with _environment(microstate.prepare(tmp_path) if microstate.prepare else {}):
            stores = await open_stores(microstate.name, microstate.stores, store_urls(microstate, config))
            try:
                runtime = Runtime(microstate, stores, config)
                await runtime.start()
                try:
                    yield runtime
                finally:
                    await runtime.drain()
            finally:
                await stores.close()

    return serving


def client_tls(ca: trustme.CA, name: str | None = None, *, signer: trustme.CA | None = None) -> TlsOptions:
    """SDK TLS options trusting `ca`; with `name`, a client certificate for it, signed by `signer` (default
    `ca`)."""
    roots = ca.cert_pem.bytes()
    if name is None:
        return TlsOptions(root_certificates=roots)
    issued = (signer or ca).issue_cert(name)
    return TlsOptions(roots, issued.private_key_pem.bytes(), issued.cert_chain_pems[0].bytes())


def server_certificate(ca: trustme.CA, directory: Path, stem: str = "server") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by `ca`, written as PEM files: (cert, key)."""
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key
