"""TLS for the server: certificate, key and optional client CA (mutual TLS), reloaded without dropping calls.

gRPC core asks a certificate "fetcher" for the configuration before every new TLS handshake
(`grpc.dynamic_ssl_server_credentials`), on one of its own threads: it returns a new configuration, or None
to keep the current one. Connections already open keep the configuration they were made with, so streams and
calls in flight are untouched by a rotation; the next handshake sees the new certificate. The fetcher here
only hands over a configuration that `reload` prepared (no I/O on gRPC's thread); `reload` runs on SIGHUP and
when the files change (checked every `--tls-reload-seconds`). A pair that does not load (half-written files,
a key that does not match its certificate) is logged and skipped: the server keeps its current certificate
and tries again at the next change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)


class TlsFilesError(ValueError):
    """The TLS files cannot be used: unreadable, not PEM, or a key that does not match the certificate."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What tells a changed file from an unchanged one: inode, size and mtime of each (a renamed-in
        file has a new inode even if its mtime was preserved)."""
        stamps = []
        for path in self.paths():
            try:
                status = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((status.st_ino, status.st_size, status.st_mtime_ns))
        return tuple(stamps)

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The files as a gRPC certificate configuration; TlsFilesError says what is wrong with them."""
        try:
            chain, key = self.cert.read_bytes(), self.key.read_bytes()
            roots = None if self.client_ca is None else self.client_ca.read_bytes()
        except OSError as exc:
            raise TlsFilesError(f"cannot read {exc.filename}: {exc.strerror}") from None
        _check_pair(chain, key, self.cert, self.key)
        if roots is not None:
            try:
                x509.load_pem_x509_certificates(roots)
            except ValueError as exc:
                raise TlsFilesError(f"{self.client_ca}: not a PEM certificate bundle ({exc})") from None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)


def _check_pair(chain: bytes, key: bytes, cert_path: Path, key_path: Path) -> None:
    # gRPC core would only fail the next handshake, with nothing said; check here to say what is wrong.
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError as exc:
        raise TlsFilesError(f"{cert_path}: not a PEM certificate chain ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsFilesError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if private.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(
        encoding, public
    ):
        raise TlsFilesError(f"{key_path} is not the private key of the certificate in {cert_path}")


class ReloadingCredentials:
    """Server credentials over `files` that take up a changed certificate at the next handshake."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._stamp = files.stamp()
        self._refused: tuple[tuple[int, int, int], ...] | None = None
        self._initial = files.load()  # TlsFilesError here stops the start: nothing would ever work
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()  # the fetcher runs on a gRPC core thread
        self.reloads = 0
        """Configurations handed to gRPC since the start (for logs and tests)."""

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.files.client_ca is not None
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self, *, force: bool = False) -> bool:
        """Prepare the files for the next handshake if they changed (or `force`); True if they were taken."""
        stamp = self.files.stamp()
        if stamp in (self._stamp, self._refused) and not force:
            return False  # unchanged, or the same files that were refused already (logged once)
        try:
            configuration = self.files.load()
        except TlsFilesError as exc:
            self._refused = stamp
            log.error("TLS files not reloaded; keeping the current ones", extra={"error": str(exc)})
            return False
        with self._lock:
            self._pending = configuration
            self._stamp = stamp
            self.reloads += 1
        log.info(
            "TLS files reloaded; new handshakes use them", extra={"phase": "tls", "reloads": self.reloads}
        )
        return True

    async def watch(self, interval: float) -> None:
        """Reload whenever the files change, checking every `interval` seconds; runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()
