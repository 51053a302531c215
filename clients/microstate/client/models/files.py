"""File-system steps shared by the SDK's blob cache and the server's file blob store (which imports the SDK,
as the flags server does): both publish a verified file by a rename that must survive a crash."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """Make a rename into (or a removal from) the directory `path` durable: fsync the directory itself."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
