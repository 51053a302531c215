"""An export bundle: one JSON Lines file per microstate and a manifest with the sha256 of each file."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def write_bundle(directory: Path, record: Mapping[str, Any], lines: Mapping[str, Sequence[str]]) -> Path:
    """Write the bundle of a finished export into `directory/<request id>/` (made with mode 0700: it holds
    personal data); its path. The manifest is written last, so a bundle with a manifest is complete."""
    bundle = directory / str(record["request_id"])
    bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, dict[str, Any]] = {}
    for name, records in lines.items():
        data = "".join(f"{line}\n" for line in records).encode()
        path = bundle / f"{name}.jsonl"
        _write_private(path, data)
        files[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "records": len(records)}
    manifest = {
        "request_id": record["request_id"],
        "start_time": record["start_time"],
        "finish_time": record["finish_time"],
        "format": "JSON Lines, one object per record: microstate, kind, key, data",
        "files": files,
    }
    _write_private(bundle / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    return bundle


def verify_bundle(bundle: Path) -> list[str]:
    """The files whose sha256 does not match the manifest (or that are missing); [] for an intact bundle."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    wrong = []
    for name, entry in manifest["files"].items():
        path = bundle / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            wrong.append(name)
    return wrong


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
