"""Tie a server's life to its supervisor's: when the parent dies, the server drains and exits.

A supervisor (`microstate up`, the test helpers) puts its pid in MICROSTATE_PARENT_PID for each child. The
child then asks Linux (prctl PR_SET_PDEATHSIG) for a SIGTERM when its parent dies, so even a SIGKILLed
supervisor leaves no orphan servers: each drains in the normal way. The child does this itself, after exec,
rather than the parent in a `preexec_fn`: a pre-exec hook forces a plain fork(), and in a process that has
gRPC loaded, gRPC's fork handlers can abort the forked child. Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys

from microstate.server.config import ConfigError

ENV_VAR = "MICROSTATE_PARENT_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child that should stop when this process dies."""
    return {**env, ENV_VAR: str(os.getpid())}


def exit_with_parent() -> None:
    """If started by a supervisor, get SIGTERM when it dies; call once the SIGTERM handler is installed."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw or not sys.platform.startswith("linux"):
        return
    if not raw.isdigit():
        raise ConfigError(f"{ENV_VAR}: expected the supervisor's process id, got {raw!r}")
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(raw):  # the supervisor died before we asked: nobody will send the signal
        log.warning("supervisor already gone; stopping", extra={"supervisor_pid": int(raw)})
        os.kill(os.getpid(), signal.SIGTERM)
