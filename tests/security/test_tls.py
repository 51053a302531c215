"""TLS in the shared runtime, with certificates made in the test (trustme): a TLS server refuses plaintext
clients, mutual TLS refuses clients without a certificate its CA signed, and a rotated certificate (SIGHUP or
a change of the files) is used from the next handshake while open calls and streams carry on."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest
import trustme

from microstate.client import TlsOptions
from microstate.client.errors import Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient
from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc as pb_grpc
from microstate.server import probe
from microstate.server.cli import main
from microstate.server.security.tls import ReloadingCredentials, TlsFiles
from tests.client.conftest import fast_options
from tests.security.conftest import Serve, client_tls, server_certificate
from tests.support.processes import START_TIMEOUT, start_listening, until

UP = {
    "": "SERVING",
    "microstate.profile.v1.ProfileService": "SERVING",
    "microstate.profile.v2.ProfileService": "SERVING",
    "microstate.subjects.v1.SubjectService": "SERVING",
}
AUDIT = {"microstate.audit.v1.AuditService": "SERVING"}
"""What `microstate serve` adds: it keeps an audit ledger and serves it (the in-process Runtime does not)."""


def roots(ca: trustme.CA, directory: Path, name: str) -> Path:
    path = directory / f"{name}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def rotate(ca: trustme.CA, cert: Path, key: Path) -> None:
    """Replace the server's files with a certificate of `ca`, each by an atomic rename."""
    new_cert, new_key = server_certificate(ca, cert.parent, stem="next")
    os.replace(new_key, key)
    os.replace(new_cert, cert)


async def health(target: str, ca: Path | None, **tls: Path) -> dict[str, str]:
    probe_tls = None if ca is None and not tls else probe.ProbeTls(ca=ca, **tls)
    return await probe.check_all(target, rpc_timeout=2.0, tls=probe_tls)


async def serving(target: str, ca: Path) -> bool:
    return await health(target, ca) in (UP, UP | AUDIT)


@pytest.mark.process
async def test_sighup_rotates_the_certificate_for_new_handshakes_without_dropping_open_calls(
    tmp_path: Path,
) -> None:
    first, second = trustme.CA(), trustme.CA()
    first_roots, second_roots = roots(first, tmp_path, "first"), roots(second, tmp_path, "second")
    cert, key = server_certificate(first, tmp_path)
    # A reload interval no test outlives: only the SIGHUP can explain the rotation.
    flags = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-reload-seconds", "3600")
    server = await asyncio.to_thread(start_listening, "profile", tmp_path, *flags)
    try:
        target = server.target
        await until(lambda: serving(target, first_roots), within=START_TIMEOUT, what="SERVING over TLS")
        assert await health(target, None) == {"": probe.UNREACHABLE}  # plaintext is refused
        command = ["health", "--target", target, "--tls-ca", str(first_roots)]
        assert await asyncio.to_thread(main, command) == 0

        tls = TlsOptions(root_certificates=first.cert_pem.bytes())
        credentials = grpc.ssl_channel_credentials(first.cert_pem.bytes())
        async with (
            ProfileClient(options=fast_options(target, tls=tls)) as client,
            grpc.aio.secure_channel(target, credentials) as channel,  # a raw stream cannot reconnect unseen
        ):
            events = pb_grpc.ProfileServiceStub(channel).WatchProfiles(pb.WatchProfilesRequest())
            await events.initial_metadata()  # its start is fixed: every later write is streamed
            await client.create(Profile(user_id="before"))
            assert (await events.read()).user_id == "before"

            rotate(second, cert, key)
            server.send(signal.SIGHUP)
            await until(lambda: serving(target, second_roots), within=START_TIMEOUT, what="the new cert")
            assert await health(target, first_roots) == {"": probe.UNREACHABLE}

            # The connections made before the rotation carry on: the open stream and the client's calls.
            await client.create(Profile(user_id="after"))
            assert (await events.read()).user_id == "after"
            assert (await client.get("before")).value.user_id == "before"
        server.send(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0, server.describe()
    finally:
        server.stop()


async def test_changed_files_are_taken_up_by_themselves(serve: Serve, tmp_path: Path) -> None:
    first, second = trustme.CA(), trustme.CA()
    cert, key = server_certificate(first, tmp_path)
    async with serve("profile", tls_cert=cert, tls_key=key, tls_reload_seconds=0.05) as runtime:
        assert runtime.endpoint is not None
        target = runtime.endpoint.target
        assert await health(target, roots(first, tmp_path, "first")) == UP
        rotate(second, cert, key)
        second_roots = roots(second, tmp_path, "second")
        await until(lambda: serving(target, second_roots), within=START_TIMEOUT, what="the new cert")
        assert await health(target, roots(first, tmp_path, "first")) == {"": probe.UNREACHABLE}


def test_files_that_do_not_fit_together_are_not_taken(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = server_certificate(ca, tmp_path)
    credentials = ReloadingCredentials(TlsFiles(cert, key))
    assert not credentials.reload()  # unchanged
    other_cert, _ = server_certificate(ca, tmp_path, stem="other")
    os.replace(other_cert, cert)  # a certificate whose key is not in the key file (a half-done rotation)
    assert not credentials.reload() and credentials.reloads == 0
    server_certificate(ca, tmp_path, stem="server")  # both files now match again
    assert credentials.reload() and credentials.reloads == 1


async def test_mutual_tls_refuses_clients_without_a_certificate_of_its_ca(
    serve: Serve, tmp_path: Path
) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    cert, key = server_certificate(ca, tmp_path)
    settings = {"tls_cert": cert, "tls_key": key, "tls_client_ca": roots(ca, tmp_path, "clients")}
    async with serve("profile", **settings) as runtime:
        assert runtime.endpoint is not None
        target = runtime.endpoint.target

        for signer in (None, stranger):
            async with ProfileClient(
                options=fast_options(
                    target,
                    tls=client_tls(ca, None if signer is None else "worker.test", signer=signer),
                    timeout=2.0,
                )
            ) as client:
                with pytest.raises(Unavailable):
                    await client.create(Profile(user_id="refused"))
        async with ProfileClient(options=fast_options(target, tls=client_tls(ca, "worker.test"))) as client:
            await client.create(Profile(user_id="admitted"))
        issued = ca.issue_cert("probe.microstate.test")
        issued.cert_chain_pems[0].write_to_path(str(tmp_path / "probe.crt"))
        issued.private_key_pem.write_to_path(str(tmp_path / "probe.key"))
        client_files = {"cert": tmp_path / "probe.crt", "key": tmp_path / "probe.key"}
        assert await health(target, tmp_path / "clients.pem", **client_files) == UP
