"""A1, the cost of authentication: GetProfile from a profile server that checks a bearer token on every call
vs the same server open, both on one Redis, rounds interleaved. The token is the same for every call, as a
worker's is between refreshes, so the server checks its signature once and remembers it (tokens.py)."""

from __future__ import annotations

from statistics import median

from bench import load, services
from bench.report import Row, at_least, at_most
from bench.stack import HOT_KEY, Settings, seed
from bench.throughput import compared
from microstate.client import ClientOptions
from microstate.client.profile.v1 import ProfileClient
from microstate.server.profile import SCOPES
from tests.support.issuer import Issuer


async def auth(settings: Settings) -> list[Row]:
    rounds, window, inflight, samples = (
        settings.rounds,
        settings.window,
        settings.concurrency,
        settings.samples,
    )
    issuer = Issuer(settings.workdir)
    token = issuer.token(*set(SCOPES.values()))
    with (
        services.redis(settings.cores.server) as url,
        services.profile_server(url, settings.workdir / "a-open", settings.cores.server) as open_server,
        services.profile_server(
            url, settings.workdir / "a-guarded", settings.cores.server, flags=issuer.flags()
        ) as guarded_server,
    ):
        options = ClientOptions(target=guarded_server.target, token=token)
        async with (
            ProfileClient(open_server.target) as open_client,
            ProfileClient(options=options) as guarded,
        ):
            await seed(guarded)

            async def get_open() -> None:
                await open_client.get(HOT_KEY)

            async def get_guarded() -> None:
                await guarded.get(HOT_KEY)

            async def open_rate() -> load.Throughput:
                return await load.closed_loop([get_open] * inflight, window, [open_server.pid])

            async def guarded_rate() -> load.Throughput:
                return await load.closed_loop([get_guarded] * inflight, window, [guarded_server.pid])

            await open_rate(), await guarded_rate()  # warm up
            opens, guardeds = await load.interleaved(rounds, open_rate, guarded_rate)
            open_p50s, guarded_p50s = await load.interleaved(
                rounds, load.sampler(get_open, samples), load.sampler(get_guarded, samples)
            )

    cpu = [median(window.server_cpu_per_call for window in run) * 1e6 for run in (guardeds, opens)]
    return [
        compared(
            "A1",
            f"GetProfile checking a bearer token vs open, SDK→server→Redis, {inflight} in flight",
            [window.rate for window in guardeds],
            [window.rate for window in opens],
            "calls/s",
            at_least(0.9),
            f"server CPU/call {cpu[0]:.0f} µs vs {cpu[1]:.0f} µs",
        ),
        compared(
            "A1",
            "the same, p50 latency, 1 in flight",
            [median(run) for run in guarded_p50s],
            [median(run) for run in open_p50s],
            "s",
            at_most(1.1),
        ),
    ]
