"""`microstate serve` on a non-loopback address: refused without authentication (exit 2, one line saying what
to do), served open when told --insecure; on loopback it runs open and its log says so."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from microstate.server.cli import USAGE_ERROR, main
from tests.support.processes import health_status, start_listening, wait_for


def test_a_non_loopback_address_without_authentication_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["serve", "profile", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)]
    assert main(arguments) == USAGE_ERROR
    error = capsys.readouterr().err
    assert error.startswith(
        "microstate serve: error: --host 0.0.0.0: a non-loopback address needs authentication"
    )
    assert "--insecure" in error
    assert not list(tmp_path.iterdir()), "nothing may be opened before the refusal"


def security_lines(server: object) -> list[dict[str, object]]:
    return [record for record in server.log_records() if record.get("phase") == "security"]  # type: ignore[attr-defined]


@pytest.mark.process
@pytest.mark.parametrize(
    ("flags", "said"), [(("--host", "0.0.0.0", "--insecure"), "(--insecure)"), ((), "(loopback only)")]
)
async def test_an_open_server_says_so(tmp_path: Path, flags: tuple[str, ...], said: str) -> None:
    server = await asyncio.to_thread(start_listening, "profile", tmp_path, *flags)
    try:
        await asyncio.to_thread(
            wait_for, lambda: health_status(server.target) == "SERVING", within=20.0, what="SERVING"
        )
        (line,) = security_lines(server)
        assert line["level"] == "WARNING"
        assert "no authentication" in str(line["msg"]) and said in str(line["msg"])
        server.send(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        server.stop()
