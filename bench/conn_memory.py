"""Where an idle, authenticated, joined socket's bytes go: python -m bench.conn_memory.

Runs a product node in this process under tracemalloc (on DATABASE_URL, default the local
PostgreSQL's `postgres` database), seeds `--clients` accounts straight into the database and one
study session they all join, opens their sockets from a `bench.worker` process (the lean
client, as `bench ws idle` does: the client's allocations are not in this process), and
compares a snapshot taken before connecting with one after the last join and a settle. Prints
the bytes per connection, in total and by allocation site (the frame in the product or in
aiohttp/asyncio that made them), and the resident memory per connection beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import os
import secrets
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from . import wire
from .context import machine_load, rest_session
from .generator import next_event, start_workers
from .procs import ProcProbe
from .seed import DirectSeeder, RestApi, create_rooms

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame outside the standard library's generic helpers."""
    for frame in reversed(trace):  # (a Traceback lists the oldest call first)
        name = frame.filename
        if "/peerspark_rt/" in name or "/aiohttp/" in name:
            short = name.split("/site-packages/")[-1].split("/wt-18-perf/")[-1]
            code = linecache.getline(frame.filename, frame.lineno).strip()[:60]
            return f"{short}:{frame.lineno}  {code}"
    frame = trace[-1]
    return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"


async def main(args: argparse.Namespace) -> int:
    from peerspark_rt.app import GuardedSite, build_app, make_runner
    from peerspark_rt.config import load_settings

    settings = load_settings(
        {
            "DATABASE_URL": args.database_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
            "PEERSPARK_ENV": "development",
            "PEERSPARK_DATA_DIR": str(Path(args.out) / "conn-memory"),
            "HOST": "127.0.0.1",
            "PORT": "0",
            "LOG_LEVEL": "WARNING",
            "REGISTRATION_RATE_LIMIT": "1000000",
            "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",
            "WS_HEARTBEAT": str(args.heartbeat),
        }
    )
    app = build_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    site = GuardedSite(runner, settings, settings.host, settings.port)
    await site.start()
    base = f"http://127.0.0.1:{site.port}"
    try:
        seeder = DirectSeeder(args.database_url, settings.jwt_secret, settings.jwt_refresh_secret)
        accounts = await seeder.accounts(args.clients, print)
        async with rest_session() as session:
            rooms = await create_rooms(RestApi(base, session), [accounts], print)
        specs = [wire.ClientSpec(a.token, a.username, [rooms[0]]) for a in accounts]
        plan = wire.WsPlan.listening(
            "product", base.replace("http://", "ws://") + "/ws", specs, connect_concurrency=64
        )
        await asyncio.sleep(1)
        gc.collect()
        probe = ProcProbe(os.getpid())
        rss_before = probe.read().rss_bytes
        # Tracing starts now: what is still allocated at the end was made for the sockets
        # (or by whatever else ran meanwhile: the settle is short and the node idle).
        tracemalloc.start(args.frames)
        events: asyncio.Queue[wire.Event | Exception] = asyncio.Queue()
        workers = await start_workers([plan], events)
        try:
            ready = await next_event(events, 300)
            if not isinstance(ready, wire.Ready):
                raise RuntimeError(f"the worker said {ready!r}")
            await asyncio.sleep(args.settle)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            rss_after = probe.read().rss_bytes
            connected = ready.connected
            sites: dict[str, int] = {}
            for stat in after.statistics("traceback"):
                key = _site(stat.traceback)
                sites[key] = sites.get(key, 0) + stat.size
            total = sum(sites.values())
            print(
                f"\n{connected} sockets connected and joined ({ready.failed} failed); "
                f"machine load {machine_load()['load1']}"
            )
            # (resident memory is not comparable here: tracemalloc's own bookkeeping grows it)
            print(
                f"traced Python memory: {total / connected / 1024:.2f} KiB per connection "
                f"(RSS under tracemalloc: {(rss_after - rss_before) / connected / 1024:.1f} KiB)"
            )
            print("\nbytes per connection by allocation site (>= 64 B):")
            for key, size in sorted(sites.items(), key=lambda kv: -kv[1]):
                per = size / connected
                if per >= 64:
                    print(f"{per:8.0f}  {key}")
        finally:
            await workers[0].send(wire.Quit())
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    finally:
        await runner.cleanup()
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conn_memory", description=__doc__)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--heartbeat", type=float, default=25.0)
    parser.add_argument("--frames", type=int, default=6, help="tracemalloc frames kept")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DSN), metavar="URL"
    )
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args(argv)
    result: Any = asyncio.run(main(args))
    return int(result)


if __name__ == "__main__":
    sys.exit(cli())
