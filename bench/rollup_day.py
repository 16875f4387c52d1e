"""`python -m bench rollup-day`: the analytics rollup of one busy day (`ROLLUP_DAY`, what the
`analytics_rollup` job runs for the (user, day) marks it takes, up to 5,000 a transaction).

Seeds, in one transaction that is rolled back at the end (nothing stays): `--users` accounts,
each with `--spans` attendance spans (a `session_left` event and its span, spread over the
day's hours), as a classroom day leaves them; then times the rollup of that day for the first
`--batch` users and for all of them, and prints the database's plan summary of the larger one.
A rollup whose cost grows with users x spans (a subquery per user and hour over every span of
the batch: 16 s for 1,001 users and 15,015 spans on the development machine) shows here at
once; one that grows with the spans is milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

import asyncpg

from peerspark_rt.analytics.db import ROLLUP_DAY
from peerspark_rt.infra.pool import apply_schema

from .context import DEFAULT_OUT, machine_load
from .procs import BenchDatabase

DAY = dt.date(2026, 1, 15)

_SEED = """
WITH people AS (
    INSERT INTO users (email, username, password_hash, first_name, last_name)
    SELECT 'rollup-' || i || '-' || $3 || '@bench.peerspark.local', 'rollup_' || i || '_' || $3,
           'x', 'Roll', 'Up'
      FROM generate_series(1, $1) AS i
    RETURNING id),
acts AS (
    INSERT INTO analytics_events (user_id, event, local_date, local_hour, occurred_at)
    SELECT p.id, 'session_left', $4::date, h, $4::date + make_interval(hours => h)
      FROM people p CROSS JOIN generate_series(1, $2) AS k
      CROSS JOIN LATERAL (SELECT (k * 7) % 24 AS h) AS hour
    RETURNING id, user_id, local_hour)
INSERT INTO analytics_spans (event_id, user_id, local_date, local_hour, seconds, subject)
SELECT id, user_id, $4::date, local_hour, 600, 'Physics' FROM acts
"""


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=1000, help="accounts with spans (1000)")
    parser.add_argument("--spans", type=int, default=15, help="spans per account (15)")
    parser.add_argument("--batch", type=int, default=100, help="the smaller rollup (100)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL database with the product's schema (default: the embedded one in "
        "--out, made and migrated if need be)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")


async def main_rollup_day(args: argparse.Namespace) -> int:
    db = BenchDatabase(args.database_url, args.out.resolve() / "pgdata")
    url = await db.start()
    try:
        if args.database_url is None:
            await apply_schema(url)
        conn = await asyncpg.connect(url)
        try:
            result = await _measure(conn, args)
        finally:
            await conn.close()
    finally:
        await db.stop()
    print(
        f"rollup of one day: {args.users:,} users x {args.spans} spans "
        f"({args.users * args.spans:,} spans); machine load {machine_load()['load1']}"
    )
    for users, ms in result["timings"]:
        print(f"  {users:>6,} users in one rollup: {ms:,.1f} ms")
    print(f"  plan of the larger: {result['plan']}")
    return 0


async def _measure(conn: asyncpg.Connection[Any], args: argparse.Namespace) -> dict[str, Any]:
    timings: list[tuple[int, float]] = []
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(_SEED, args.users, args.spans, f"{time.time_ns():x}", DAY)
        await conn.execute("ANALYZE analytics_spans; ANALYZE analytics_events")
        users = [
            r["user_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT user_id FROM analytics_spans WHERE local_date = $1", DAY
            )
        ]
        for size in sorted({min(args.batch, len(users)), len(users)}):
            started = time.perf_counter()
            await conn.fetch(ROLLUP_DAY, DAY, users[:size])
            timings.append((size, (time.perf_counter() - started) * 1000))
        plan = await conn.fetch("EXPLAIN " + ROLLUP_DAY, DAY, users)
        lines = [str(r[0]) for r in plan]
        subplans = sum("SubPlan" in line for line in lines)
        summary = f"{len(lines)} plan lines, {subplans} SubPlan(s)"
    finally:
        await transaction.rollback()
    return {"timings": timings, "plan": summary}
