"""Store roles: the stores a microstate declares, each opened from a URL of its own.

A slice names what it keeps and where: every slice so far keeps `records` (the keyed records store of
store/base.py); the model registry adds a content-addressed blob store, telemetry and the audit ledger an
append-only log. A role has a name and a kind; the kind says which protocol serves it and which URL schemes
open it. The first role a slice declares is its primary one, opened from `--store`; each other role is opened
from its entry in `--role-stores` ("ROLE=URL ..."), else from the `--store` URL when the role's kind has a
backend of that scheme (one Redis for records and log), else from a default under `--data-dir`.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from microstate.server.store.base import Store
from microstate.server.store.blobs.base import BlobStore


@dataclass(frozen=True)
class _KindSpec:
    opener: str
    """"module:function" of its `async open(url, namespace, **options)`; imported only when used."""
    backends: str
    """"module:attribute" of its backend table (URL scheme -> backend), for the schemes it can open."""
    default: Callable[[str, str, Path], str]
    """(microstate, role, data dir) -> the embedded default URL."""

    @property
    def schemes(self) -> frozenset[str]:
        module_name, attribute = self.backends.split(":")
        return frozenset(getattr(importlib.import_module(module_name), attribute))


def _sqlite_default(name: str, role: str, data_dir: Path) -> str:
    file = f"{name}.db" if role == "records" else f"{name}-{role}.db"
    return f"sqlite:///{(data_dir / file).resolve()}"


def _directory_default(name: str, role: str, data_dir: Path) -> str:
    return f"file://{(data_dir / f'{name}-{role}').resolve()}"


class StoreKind(enum.Enum):
    RECORDS = _KindSpec(
        "microstate.server.store:open_store", "microstate.server.store:BACKENDS", _sqlite_default
    )
    """Keyed records with revisions, compare-and-set, TTL, listing and a resumable change feed."""
    BLOBS = _KindSpec(
        "microstate.server.store.blobs:open_blobs",
        "microstate.server.store.blobs:BLOB_BACKENDS",
        _directory_default,
    )
    """Immutable blobs named by their sha256 digest, uploaded resumably, read in ranges."""
    LOG = _KindSpec(
        "microstate.server.store.log:open_log", "microstate.server.store.log:LOG_BACKENDS", _sqlite_default
    )
    """An append-only log: atomic, deduplicated appends, reads and follows from a cursor, trimmed by age."""


@dataclass(frozen=True)
class StoreRole:
    name: str
    """How the slice and the operator name it: "records", "blobs", "events", "audit"."""
    kind: StoreKind


RECORDS = StoreRole("records", StoreKind.RECORDS)
"""The records role every slice so far has."""
BLOBS = StoreRole("blobs", StoreKind.BLOBS)
"""A content-addressed blob role (the model registry's bytes)."""


def parse_role_urls(text: str) -> dict[str, str]:
    """'ROLE=URL ROLE=URL' (whitespace-separated; a URL holds no space) -> {role: URL}."""
    urls: dict[str, str] = {}
    for entry in text.split():
        role, sep, url = entry.partition("=")
        if not sep or not role.isidentifier() or not url:
            raise ValueError(f"{entry!r} is not ROLE=URL")
        if role in urls:
            raise ValueError(f"role {role!r} is given twice")
        urls[role] = url
    return urls


def role_urls(
    name: str, roles: Sequence[StoreRole], primary: str | None, others: Mapping[str, str], data_dir: Path
) -> dict[str, str]:
    """The URL of every role of microstate `name` (see the module docstring for the rule)."""
    unknown = set(others) - {role.name for role in roles}
    if unknown:
        declared = ", ".join(role.name for role in roles)
        raise ValueError(f"{name} has no store role {', '.join(sorted(unknown))}; its roles: {declared}")
    first = roles[0]
    urls = {
        first.name: primary or others.get(first.name) or first.kind.value.default(name, first.name, data_dir)
    }
    for role in roles[1:]:
        spec = role.kind.value
        if role.name in others:
            urls[role.name] = others[role.name]
        elif primary and urlsplit(primary).scheme.lower() in spec.schemes:
            urls[role.name] = primary
        else:
            urls[role.name] = spec.default(name, role.name, data_dir)
    return urls


class Stores:
    """The opened stores of one microstate, by role; `close()` closes them all."""

    def __init__(self, opened: Mapping[str, tuple[StoreRole, Any]]) -> None:
        self._opened = dict(opened)

    @classmethod
    def of(cls, records: Store) -> Stores:
        """A microstate whose only role is `records`."""
        return cls({RECORDS.name: (RECORDS, records)})

    def __iter__(self) -> Iterator[tuple[StoreRole, Any]]:
        return iter(self._opened.values())

    def has(self, role: str) -> bool:
        return role in self._opened

    def with_role(self, role: StoreRole, store: Any) -> Stores:
        """These stores and `store` as `role`."""
        return Stores({**self._opened, role.name: (role, store)})

    def _get(self, role: str, kind: StoreKind) -> Any:
        declared, store = self._opened[role]
        if declared.kind is not kind:
            raise TypeError(f"store role {role!r} is a {declared.kind.name} store, not {kind.name}")
        return store

    def records(self, role: str = RECORDS.name) -> Store:
        return cast(Store, self._get(role, StoreKind.RECORDS))

    def blobs(self, role: str = "blobs") -> BlobStore:
        return cast(BlobStore, self._get(role, StoreKind.BLOBS))

    def log(self, role: str = "log") -> Any:
        return self._get(role, StoreKind.LOG)

    async def ping(self) -> None:
        """Return when every store answers; raise the first failure."""
        for _, store in self:
            await store.ping()

    async def close(self) -> None:
        for _, store in self:
            with contextlib.suppress(Exception):  # close the others whatever one of them raises
                await store.close()


class UnusableURL(ValueError):
    """A role's URL that no backend of its kind can open (a configuration error, not an outage)."""

    def __init__(self, role: StoreRole, problem: str) -> None:
        super().__init__(problem)
        self.role = role


async def open_stores(namespace: str, roles: Sequence[StoreRole], urls: Mapping[str, str]) -> Stores:
    """Open every role at its URL, in declaration order; on a failure, close what was opened and raise
    (UnusableURL for a URL its kind cannot use, StoreUnavailable for a backend that does not answer)."""
    opened: dict[str, tuple[StoreRole, Any]] = {}
    try:
        for role in roles:
            module_name, function = role.kind.value.opener.split(":")
            opener: Callable[..., Awaitable[Any]] = getattr(importlib.import_module(module_name), function)
            try:
                opened[role.name] = (role, await opener(urls[role.name], namespace))
            except ValueError as exc:
                raise UnusableURL(role, str(exc)) from None
    except BaseException:
        await Stores(opened).close()
        raise
    return Stores(opened)
