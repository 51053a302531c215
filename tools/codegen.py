"""Regenerate generated/ from proto/ with grpcio-tools (messages, gRPC stubs, .pyi).

python tools/codegen.py          # rewrite generated/microstate/
python tools/codegen.py --check  # regenerate into a temp dir; exit 1 on any drift
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "generated"
PACKAGE = "microstate"


def generate(out: Path) -> None:
    well_known = str(resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def drift(fresh: Path, committed: Path) -> list[str]:
    new, old = tree(fresh), tree(committed)
    changed = [
        name for name in new.keys() & old.keys() if not filecmp.cmp(new[name], old[name], shallow=False)
    ]
    return sorted(
        [f"missing: {n}" for n in new.keys() - old.keys()]
        + [f"stale: {n}" for n in old.keys() - new.keys()]
        + [f"differs: {n}" for n in changed]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if generated/ differs from a fresh run")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if check:
            problems = drift(Path(tmp) / PACKAGE, OUT / PACKAGE)
            for line in problems:
                print(f"codegen drift: {line}", file=sys.stderr)
            if problems:
                print("run: python tools/codegen.py", file=sys.stderr)
            return 1 if problems else 0
        shutil.rmtree(OUT / PACKAGE, ignore_errors=True)
        shutil.copytree(Path(tmp) / PACKAGE, OUT / PACKAGE)
    print(f"generated {OUT / PACKAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
