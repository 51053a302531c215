"""A/B a server change: `python -m bench.ab DIR [--quick]` compares this checkout's profile server (A) with
the one in DIR (B, e.g. a git worktree with a proposed optimisation applied), side by side.

Both servers run at once, each on a Redis of its own (so the two may differ in storage layout), all on the
server core, and h2load (so no Python client noise) drives
them in alternation, round by round; each figure is B's calls/s over A's measured back to back, plus each
side's server CPU per call. Only the server changes between A and B; the SDK is not involved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from pathlib import Path
from statistics import median

from bench import env, load


async def compare(checkout: Path, cores: env.Cores, *, quick: bool) -> None:
    from bench import services, stack, throughput
    from microstate.client.profile.v1 import ProfileClient
    from microstate.profile.v1 import profile_pb2
    from tests.support import processes

    rounds, seconds = (3, 1.0) if quick else (7, 2.0)
    update = profile_pb2.UpdateProfileRequest(profile=stack.sample_profile(stack.HOT_KEY))
    update.update_mask.paths.append("display_name")
    methods = {
        "GetProfile": profile_pb2.GetProfileRequest(user_id=stack.HOT_KEY),
        "BatchGetProfiles(100)": profile_pb2.BatchGetProfilesRequest(user_ids=stack.batch_ids()),
        "UpdateProfile": update,
    }
    with tempfile.TemporaryDirectory(prefix="microstate-ab-") as scratch, contextlib.ExitStack() as running:
        workdir = Path(scratch)
        url_a, url_b = (running.enter_context(services.redis(cores.server)) for _ in "ab")
        a = running.enter_context(services.profile_server(url_a, workdir / "a", cores.server))
        b = running.enter_context(
            services.profile_server(url_b, workdir / "b", cores.server, checkout=checkout)
        )
        for server in (a, b):
            async with ProfileClient(server.target) as client:
                await stack.seed(client)
        print(f"A: {processes.REPO}\nB: {checkout}\n{cores.describe()}\n")
        columns = ("A calls/s", "B calls/s", "B/A", "A CPU/call", "B CPU/call")
        print(f"{'method':24}" + "".join(f"{column:>12}" for column in columns))
        for name, message in methods.items():
            method = f"{throughput.SERVICE}/{name.split('(')[0]}"
            body = workdir / f"{name}.grpc"
            body.write_bytes(load.grpc_frame(message.SerializeToString()))
            windows = [load.H2Window([(s.target, method, body)], seconds, 16, [s.pid]) for s in (a, b)]
            runs_a, runs_b = await load.interleaved(rounds, *windows)
            rate_a = [results[0].rate for results, _ in runs_a]
            rate_b = [results[0].rate for results, _ in runs_b]
            cpu_a = median(cpu[0] / results[0].rate for results, cpu in runs_a)
            cpu_b = median(cpu[0] / results[0].rate for results, cpu in runs_b)
            ratio = load.paired_ratio(rate_b, rate_a)
            print(
                f"{name:24}{median(rate_a):12,.0f}{median(rate_b):12,.0f}{ratio:12.2f}"
                f"{cpu_a * 1e6:10.0f}µs{cpu_b * 1e6:10.0f}µs"
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="the other checkout (B)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cores = env.choose_cores()
    env.pin_self(cores)  # before grpc starts threads
    asyncio.run(compare(args.checkout.resolve(), cores, quick=args.quick))


if __name__ == "__main__":
    main()
