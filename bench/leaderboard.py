"""python -m bench leaderboard: the leaderboard's read and write paths on Redis with a
million users' scores (bench/README.md, "Leaderboard").

Seeds `--users` members into one board (ZADD, 10,000 members a command, pipelined), marks it
ready, then measures the product's own read path (`Boards.ranked`: the top 50, the reader's
rank and score, and their neighbours - one pipelined round trip, two when the reader is
outside the top) for random readers, one at a time and `--concurrency` at once, and the
award path's board writes (`RedisScores.write`: ZADD GT plus EXPIREAT) for `--seconds`.
Reports p50/p99/max per read, writes per second, and the CPU the generator (this process)
and redis-server used over each phase. Without `--redis-url` a private redis-server is
started (pinned to the first CPU, this process to the others) and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

from peerspark_rt.gamification.leaderboard import Boards
from peerspark_rt.gamification.scores import RedisScores, ScoreWrite
from peerspark_rt.infra.pool import Database

from .context import DEFAULT_OUT

SEED_CHUNK = 10_000
TIMEOUT = 5.0  # seconds a bench Redis call may take (the product's default is 1 s)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=1_000_000, help="scores seeded (1000000)")
    parser.add_argument("--reads", type=int, default=20_000, help="reads per phase (20000)")
    parser.add_argument("--concurrency", type=int, default=32, help="readers at once (32)")
    parser.add_argument("--seconds", type=float, default=5.0, help="write phase length (5)")
    parser.add_argument(
        "--redis-url", default=None, help="a Redis to use (default: start a private one)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the kernel place redis-server and this process"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _redis_cpu(redis: Redis) -> float:
    info: dict[str, Any] = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Phase:
    """Wall time and the CPU this process and redis-server used over one phase."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def __aenter__(self) -> Phase:
        self.wall = time.perf_counter()
        self.cpu = _cpu()
        self.server = await _redis_cpu(self.redis)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu() - self.cpu
        self.server = await _redis_cpu(self.redis) - self.server

    def shares(self) -> dict[str, float]:
        return {
            "seconds": round(self.wall, 3),
            "generator_cpu_share": round(self.cpu / self.wall, 3),
            "redis_cpu_share": round(self.server / self.wall, 3),
        }


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


def _latencies(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(_percentile(ordered, 50) * 1000, 3),
        "p99_ms": round(_percentile(ordered, 99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def _start_redis(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes] | None, str]:
    """A private redis-server (pinned to the first CPU, this process to the others), unless
    --redis-url names one."""
    if args.redis_url is not None:
        return None, str(args.redis_url)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: give --redis-url")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", workdir]  # fmt: skip
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1 and shutil.which("taskset") and not args.no_pin:
        command = ["taskset", "-c", str(cpus[0]), *command]
        os.sched_setaffinity(0, cpus[1:])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, f"redis://127.0.0.1:{port}/0"


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    redis = Redis.from_url(url, socket_timeout=TIMEOUT, max_connections=args.concurrency + 8)
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except Exception:  # noqa: BLE001 (the server is starting)
                await asyncio.sleep(0.05)
        return await _measure(redis, args)
    finally:
        await redis.aclose()


async def _measure(redis: Redis, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    store = RedisScores(redis, prefix, timeout=TIMEOUT)
    # the board is ready, so the read path never falls back to PostgreSQL
    boards = Boards(cast(Database, None), store, "redis")
    metric, scope, period = "points", "global", "all"
    board = f"{metric}:{scope}:{period}"
    key = store.key(board)
    rng = random.Random(14)
    members = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.users)]
    result: dict[str, Any] = {"users": args.users, "load_before": os.getloadavg()[0]}
    print(f"seeding {args.users:,} scores ...", flush=True)
    async with Phase(redis) as seed:
        pipe = redis.pipeline(transaction=False)
        for start in range(0, args.users, SEED_CHUNK):
            chunk = members[start : start + SEED_CHUNK]
            pipe.zadd(key, {m: rng.randint(0, 50_000) for m in chunk})
            if len(pipe) >= 10:
                await pipe.execute()
        await pipe.execute()
        await store.finish_rebuild(board, None)
    result["seed"] = {**seed.shares(), "per_second": round(args.users / seed.wall)}
    print(f"  {seed.wall:.1f} s ({args.users / seed.wall:,.0f} scores/s)", flush=True)

    async def read_once(samples: list[float]) -> None:
        reader = uuid.UUID(members[rng.randrange(args.users)])
        started = time.perf_counter()
        ranked = await boards.ranked(metric, scope, period, None, reader, 50)
        samples.append(time.perf_counter() - started)
        if ranked.rank is None or len(ranked.top) != 50 or not ranked.neighbours:
            raise RuntimeError("a read came back incomplete")

    for label, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
        samples: list[float] = []
        per_task = max(1, args.reads // concurrency)

        async def reader_task(samples: list[float] = samples, n: int = per_task) -> None:
            for _ in range(n):
                await read_once(samples)

        print(f"reading: top 50 + own rank + neighbours, {label} ...", flush=True)
        async with Phase(redis) as phase:
            await asyncio.gather(*(reader_task() for _ in range(concurrency)))
        stats = {
            **_latencies(samples),
            "reads": len(samples),
            "concurrency": concurrency,
            "per_second": round(len(samples) / phase.wall),
            **phase.shares(),
        }
        result[f"read_{label}"] = stats
        print(f"  {json.dumps(stats)}", flush=True)

    print(f"updating scores for {args.seconds:g} s ...", flush=True)
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    written = 0
    write_samples: list[float] = []
    stop_at = time.perf_counter() + args.seconds

    async def writer() -> None:
        nonlocal written
        while time.perf_counter() < stop_at:
            member = members[rng.randrange(args.users)]
            started = time.perf_counter()
            await store.write([ScoreWrite(board, member, 60_000 + written, True, ends)])
            write_samples.append(time.perf_counter() - started)
            written += 1

    async with Phase(redis) as phase:
        await asyncio.gather(*(writer() for _ in range(args.concurrency)))
    result["update"] = {
        "writes": written,
        "per_second": round(written / phase.wall),
        "concurrency": args.concurrency,
        **_latencies(write_samples),
        **phase.shares(),
    }
    print(f"  {json.dumps(result['update'])}", flush=True)
    await redis.unlink(key, key + ":ready")
    result["load_after"] = os.getloadavg()[0]
    return result


def main_leaderboard(args: argparse.Namespace, runner: Callable[[Any], Any]) -> int:
    server, url = _start_redis(args)
    try:
        result: dict[str, Any] = runner(run(args, url))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    out: Path = args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-leaderboard"
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    seq, conc, upd = result["read_sequential"], result["read_concurrent"], result["update"]

    def shares(phase: dict[str, Any]) -> str:
        return (
            f"generator CPU {phase['generator_cpu_share']:.0%}, "
            f"redis {phase['redis_cpu_share']:.0%}"
        )

    print()
    print(f"leaderboard, {result['users']:,} users (top 50 + own rank + neighbours)")
    print(f"  read, 1 at a time: p50 {seq['p50_ms']} ms  p99 {seq['p99_ms']} ms  "
          f"({seq['per_second']:,}/s; {shares(seq)})")  # fmt: skip
    print(f"  read, {conc['concurrency']} at once: p50 {conc['p50_ms']} ms  "
          f"p99 {conc['p99_ms']} ms  ({conc['per_second']:,}/s; {shares(conc)})")  # fmt: skip
    print(f"  score updates: {upd['per_second']:,}/s  p99 {upd['p99_ms']} ms  ({shares(upd)})")
    print(f"  goal p99 < 5 ms (one at a time): {'met' if seq['p99_ms'] < 5 else 'NOT met'}")
    print(f"  machine load average {result['load_before']:.1f} before, "
          f"{result['load_after']:.1f} after (CPUs: {os.cpu_count()})")  # fmt: skip
    print(f"  written to {out / 'result.json'}")
    return 0
