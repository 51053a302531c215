"""`microstate serve`: run one microstate in this process until SIGTERM or SIGINT, then drain and exit.

Owns what belongs to the process rather than to the server: opening and closing the store, signal handling
(SIGTERM/SIGINT drain; SIGHUP reloads the TLS files for new handshakes), announcing the endpoint (stdout for
people, the ready file for supervisors) and the phase logs around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import grpc

from microstate.server import supervision
from microstate.server.audit.serving import Auditing
from microstate.server.config import ConfigError, ServerConfig
from microstate.server.kit import subjects
from microstate.server.kit.migrations import known_version
from microstate.server.metrics import ServerMetrics
from microstate.server.registry import Microstate
from microstate.server.runtime import Endpoint, Runtime
from microstate.server.security import Security
from microstate.server.store import StoreError, StoreMisconfigured, StoreUnavailable
from microstate.server.store.roles import Stores, UnusableURL, open_stores, parse_role_urls, role_urls
from microstate.server.tracing import tracing

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def store_urls(microstate: Microstate, config: ServerConfig) -> dict[str, str]:
    """The URL of each of the microstate's store roles (store/roles.py)."""
    others = parse_role_urls(config.role_stores or "")
    try:
        return role_urls(microstate.name, microstate.stores, config.store, others, config.data_dir)
    except ValueError as exc:
        raise ConfigError(f"--role-stores: {exc}") from None


def default_store_url(microstate: Microstate, data_dir: Path) -> str:
    """The embedded default of the microstate's primary store role, under the data directory."""
    return role_urls(microstate.name, microstate.stores, None, {}, data_dir)[microstate.stores[0].name]


def redacted(url: str) -> str:
    """`url` fit for logs and terminals: a password in it (redis://:secret@host) becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


async def _check_schema(microstate: Microstate, stores: Stores) -> None:
    """Refuse to serve records migrated to a schema version this code does not know (kit/migrations.py);
    a store that does not answer yet is checked again by every write."""
    if microstate.schema is None:
        return
    records = stores.records(microstate.stores[0].name)
    try:
        await records.ping()  # first: a store that refuses this URL says why in its own words
        await known_version(records, microstate.schema)
    except StoreMisconfigured:
        await stores.close()
        raise
    except StoreUnavailable:
        pass


class StopSignals:
    """The first stop signal asks for a drain; a second one cuts the drain period short."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()

    def _received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("second stop signal: skipping the rest of the drain period", extra={"signal": name})
            self.hurry.set()
        else:
            log.info("stop signal received", extra={"phase": "signal", "signal": name})
            self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._received, signum)
        try:
            yield
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)


def _write_ready_file(path: Path, endpoint: Endpoint, metrics_port: int | None) -> None:
    # Write then rename, so a supervisor polling for the file never reads half of it.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    ready = {"host": endpoint.host, "port": endpoint.port, "pid": os.getpid(), "metrics_port": metrics_port}
    partial.write_text(json.dumps(ready))
    partial.replace(path)


async def serve(
    microstate: Microstate,
    config: ServerConfig,
    *,
    announce: TextIO = sys.stdout,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> int:
    """Serve until a stop signal, drain, close the store; returns the exit code (0 after a clean stop).

    `interceptors` go to the Runtime (tests pass theirs in through tests/support/hooked_server.py)."""
    signals = StopSignals()
    with signals.installed():
        supervision.exit_with_parent()
        security = Security.from_config(config)  # what cannot work stops here, before any store opens
        urls = store_urls(microstate, config)
        traces = tracing(config.tracing, microstate.name)  # first: a missing extra stops the start at once
        config.data_dir.mkdir(parents=True, exist_ok=True)  # where the embedded defaults live
        try:
            stores = await open_stores(microstate.name, microstate.stores, urls)
        except StoreError:
            raise
        except UnusableURL as exc:  # a configuration error, not a runtime failure
            primary = exc.role == microstate.stores[0]
            raise ConfigError(
                f"--store: {exc}" if primary else f"--role-stores: {exc.role.name}: {exc}"
            ) from None
        await _check_schema(microstate, stores)
        if microstate.subjects is not None:
            stores = await subjects.with_receipts(stores, microstate.name, urls[microstate.stores[0].name])
        for role, url in urls.items():
            log.info("store opened", extra={"phase": "store", "role": role, "store": redacted(url)})
        url = urls[microstate.stores[0].name]
        metrics = ServerMetrics() if config.metrics_port is not None else None
        auditing: Auditing | None = None
        try:
            if metrics is not None:
                stores = metrics.measure(stores)
            if config.audit == "on":
                auditing = await Auditing.open(
                    microstate.name,
                    stores,
                    urls,
                    config.audit_dir or config.data_dir / "audit",
                    subject_of=microstate.audit_subject,
                    checkpoint_every=config.audit_checkpoint_every,
                    checkpoint_seconds=config.audit_checkpoint_seconds,
                    # A receipt repeats an erase whose deletions the records store's ledger already holds.
                    unaudited=(subjects.RECEIPTS,),
                )
            interceptors = (*traces.interceptors, *interceptors)
            runtime = Runtime(
                microstate,
                stores,
                config,
                interceptors=interceptors,
                metrics=metrics,
                security=security,
                auditing=auditing,
            )
            endpoint = await runtime.start()
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_tls)
            metrics_port = None
            if metrics is not None and config.metrics_port is not None:
                metrics_port = metrics.expose(runtime.serving, config.host, config.metrics_port)
            print(
                f"{microstate.name} serving on {endpoint} (store {redacted(url)})", file=announce, flush=True
            )
            if config.ready_file is not None:
                _write_ready_file(config.ready_file, endpoint, metrics_port)
            await signals.stop.wait()
            await runtime.drain(hurry=signals.hurry)
        finally:
            traces.close()
            if metrics is not None:
                metrics.close()
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if auditing is not None:
                await auditing.stop()  # at once if the runtime's drain did already
            await stores.close()
            log.info("stores closed", extra={"phase": "closed"})
            if config.ready_file is not None:
                config.ready_file.unlink(missing_ok=True)
    log.info("exiting", extra={"phase": "exit", "exit_code": 0})
    return 0
