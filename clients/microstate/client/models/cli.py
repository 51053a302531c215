"""`microstate models push|pull|ls|alias`: the model registry from a shell, with progress bars (tqdm).

Also installed as `microstate-models`. Needs the `cli` extra: `pip install 'microstate-client[cli]'`.
Target: --target, else MICROSTATE_MODELS_TARGET, else localhost:50054; cache: --cache, else
MICROSTATE_MODELS_CACHE, else ~/.cache/microstate/models.

Exit codes: 0 success, 1 the registry refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from microstate.client.errors import MicrostateError
from microstate.client.models.v1 import SyncModelsClient

USAGE_ERROR = 2


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress(done, total) callback drawing a tqdm bar on stderr (nothing when not `enabled`)."""
    if not enabled:
        yield lambda done, total: None
        return
    from tqdm import tqdm  # the cli extra; imported only when a bar is drawn

    with tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False) as bar:

        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)

        yield update


def _client(args: argparse.Namespace) -> SyncModelsClient:
    return SyncModelsClient(args.target, cache=args.cache)


def _push(args: argparse.Namespace) -> int:
    metadata = dict(entry.partition("=")[::2] for entry in args.metadata)
    with _client(args) as client, progress_bar(f"push {args.model}", not args.quiet) as progress:
        made = client.push(
            args.model, args.file, media_type=args.media_type, metadata=metadata, progress=progress
        )
        if args.alias:
            client.set_alias(args.model, args.alias, made.version.version)
    note = " (already held: no bytes sent)" if made.deduplicated else ""
    print(f"{args.model}/{made.version.version} {made.version.digest}{note}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    with _client(args) as client, progress_bar(f"pull {args.ref}", not args.quiet) as progress:
        fetched = client.fetch(args.ref, progress=progress, timeout=args.timeout)
    if fetched.stale:
        print(
            f"warning: the registry did not answer; {args.ref} as resolved {fetched.age:.0f}s ago",
            file=sys.stderr,
        )
    if args.output:
        shutil.copyfile(fetched.path, args.output)
    print(f"{args.output or fetched.path} {fetched.digest}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if not args.model:
            for model in client.list_models_all():
                print(f"{model.model_id}\tlatest {model.latest_version}\t{model.description}")
            return 0
        aliases: dict[int, list[str]] = {}
        for alias in client.list_aliases(args.model, page_size=1000).items:
            aliases.setdefault(alias.version, []).append(alias.alias)
        for version in client.list_versions_all(args.model):
            names = ",".join(aliases.get(version.version, []))
            print(f"{version.version}\t{version.digest}\t{version.size_bytes}\t{names}")
    return 0


def _alias(args: argparse.Namespace) -> int:
    model, _, alias = args.name.partition("@")
    if not alias:
        raise ValueError(f"{args.name!r}: name an alias as MODEL@ALIAS")
    with _client(args) as client:
        if args.delete:
            client.delete_alias(model, alias, etag=args.etag)
            print(f"{model}@{alias} deleted")
            return 0
        if args.version is None:
            read = client.get_alias(model, alias).value
            moves = " ".join(f"{m.from_version}->{m.to_version}" for m in read.history)
            print(f"{model}@{alias} -> {read.version}\tetag {read.etag}\thistory {moves}")
            return 0
        moved = client.set_alias(model, alias, args.version, etag=args.etag)
    print(f"{model}@{alias} -> {moved.version}\tetag {moved.etag}")
    return 0


def parser(prog: str = "microstate models") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description="Push, pull, list and alias model versions.")
    top.add_argument("--target", metavar="HOST:PORT", help="the registry (default: MICROSTATE_MODELS_TARGET)")
    top.add_argument(
        "--cache", type=Path, metavar="DIR", help="the blob cache (default: MICROSTATE_MODELS_CACHE)"
    )
    top.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    push = commands.add_parser("push", help="upload a file as the model's next version")
    push.add_argument("model")
    push.add_argument("file", type=Path)
    push.add_argument("--media-type", default="application/octet-stream")
    push.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    push.add_argument("--alias", help="then point this alias at the new version")
    push.set_defaults(run=_push)

    pull = commands.add_parser("pull", help="fetch MODEL@ALIAS, MODEL/N or sha256:HEX into the cache")
    pull.add_argument("ref")
    pull.add_argument("-o", "--output", type=Path, help="also copy it here")
    pull.add_argument("--timeout", type=float, help="seconds for the whole fetch (default: none)")
    pull.set_defaults(run=_pull)

    ls = commands.add_parser("ls", help="list models, or one model's versions with their aliases")
    ls.add_argument("model", nargs="?")
    ls.set_defaults(run=_ls)

    alias = commands.add_parser("alias", help="show, move (with VERSION) or delete MODEL@ALIAS")
    alias.add_argument("name", metavar="MODEL@ALIAS")
    alias.add_argument("version", type=int, nargs="?")
    alias.add_argument("--etag", default="", help="move or delete only if the alias still has this etag")
    alias.add_argument("--delete", action="store_true")
    alias.set_defaults(run=_alias)
    return top


def main(argv: Sequence[str] | None = None, prog: str = "microstate-models") -> int:
    args = parser(prog).parse_args(argv)
    try:
        code: int = args.run(args)
    except (MicrostateError, ValueError, OSError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, ValueError) else 1
    return code


if __name__ == "__main__":
    sys.exit(main())
