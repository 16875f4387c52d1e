"""SQL for the durable job queue (table `jobs`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from .dbtypes import Executor

CHANNEL = "peerspark_jobs"  # NOTIFY channel: a job became ready
COLUMNS = """id, kind, payload, status, run_at, attempts, max_attempts, last_error, locked_by,
             locked_until, dedupe_key, created_at, updated_at, finished_at"""


async def insert(
    conn: Executor,
    *,
    kind: str,
    payload: dict[str, Any],
    run_at: dt.datetime | None,
    dedupe_key: str | None,
    max_attempts: int,
) -> int | None:
    """Insert a job; None when `dedupe_key` is already taken. The NOTIFY is transactional: it
    reaches listening workers only if (and when) the caller's transaction commits."""
    job_id = await conn.fetchval(
        """INSERT INTO jobs (kind, payload, run_at, dedupe_key, max_attempts)
           VALUES ($1, $2, COALESCE($3, NOW()), $4, $5)
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id""",
        kind,
        payload,
        run_at,
        dedupe_key,
        max_attempts,
    )
    if job_id is not None:
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, kind)
    return int(job_id) if job_id is not None else None


async def claim(
    conn: Executor, *, node: str, kinds: list[str], limit: int, lease_seconds: float
) -> list[asyncpg.Record]:
    """Take up to `limit` ready jobs of `kinds`, skipping rows other workers hold."""
    return await conn.fetch(
        f"""WITH ready AS (
                SELECT id FROM jobs
                 WHERE status = 'queued' AND run_at <= NOW() AND kind = ANY($2::text[])
                 ORDER BY run_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
            UPDATE jobs j
               SET status = 'running', attempts = j.attempts + 1, locked_by = $1,
                   locked_until = NOW() + make_interval(secs => $4), updated_at = NOW()
              FROM ready WHERE j.id = ready.id
            RETURNING {", ".join("j." + c.strip() for c in COLUMNS.split(","))}""",  # noqa: S608 (composed of constants; values are parameters)
        node,
        kinds,
        limit,
        lease_seconds,
    )


async def complete(conn: Executor, job_id: int, node: str) -> bool:
    status = await conn.execute(
        """UPDATE jobs SET status = 'done', finished_at = NOW(), updated_at = NOW(),
                  locked_by = NULL, locked_until = NULL
            WHERE id = $1 AND status = 'running' AND locked_by = $2""",
        job_id,
        node,
    )
    return status.endswith(" 1")


async def fail(
    conn: Executor, job_id: int, node: str, error: str, retry_in: float | None
) -> str | None:
    """Record a failure: back to 'queued' after `retry_in` seconds, or 'dead' when None.
    Returns the new status (None if this node no longer held the job)."""
    row = await conn.fetchrow(
        """UPDATE jobs
              SET status = CASE WHEN $4::float8 IS NULL THEN 'dead' ELSE 'queued' END,
                  run_at = CASE WHEN $4::float8 IS NULL THEN run_at
                                ELSE NOW() + make_interval(secs => $4::float8) END,
                  finished_at = CASE WHEN $4::float8 IS NULL THEN NOW() END,
                  last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = NOW()
            WHERE id = $1 AND status = 'running' AND locked_by = $2
        RETURNING status""",
        job_id,
        node,
        error[:4000],
        retry_in,
    )
    return row["status"] if row else None


async def release(conn: Executor, job_id: int, node: str) -> None:
    """Give a job back untouched (this node is shutting down mid-job): the attempt is not
    counted against it."""
    await conn.execute(
        """UPDATE jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0),
                  locked_by = NULL, locked_until = NULL, updated_at = NOW()
            WHERE id = $1 AND status = 'running' AND locked_by = $2""",
        job_id,
        node,
    )


async def reap_expired(conn: Executor) -> int:
    """Jobs whose lease ran out (their worker died): queue them again, or bury them when they
    have used every attempt."""
    status = await conn.execute(
        """UPDATE jobs
              SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                  finished_at = CASE WHEN attempts >= max_attempts THEN NOW() END,
                  last_error = 'lease expired: the worker holding it stopped (was: '
                               || COALESCE(locked_by, '?') || ')',
                  locked_by = NULL, locked_until = NULL, updated_at = NOW()
            WHERE status = 'running' AND locked_until < NOW()"""
    )
    return int(status.split()[-1])


async def get(conn: Executor, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM jobs WHERE id = $1", job_id)  # noqa: S608 (composed of constants; values are parameters)


async def stats(conn: Executor) -> list[asyncpg.Record]:
    """Counts by kind and status of the jobs still of interest, and the oldest ready age."""
    return await conn.fetch(
        """SELECT kind, status, count(*) AS n,
                  COALESCE(EXTRACT(EPOCH FROM NOW() - min(run_at)
                           FILTER (WHERE status = 'queued' AND run_at <= NOW())), 0) AS oldest
             FROM jobs WHERE status IN ('queued', 'running', 'dead')
            GROUP BY kind, status"""
    )


async def delete_finished(
    conn: Executor, done_before: dt.datetime, dead_before: dt.datetime
) -> int:
    status = await conn.execute(
        """DELETE FROM jobs
            WHERE (status = 'done' AND finished_at < $1)
               OR (status = 'dead' AND finished_at < $2)""",
        done_before,
        dead_before,
    )
    return int(status.split()[-1])


async def watermark(conn: Executor, name: str) -> dt.datetime | None:
    """How far the periodic scan `name` has got (None: it never ran)."""
    value = await conn.fetchval("SELECT scanned_until FROM scan_watermarks WHERE name = $1", name)
    return value if isinstance(value, dt.datetime) else None


async def advance_watermark(conn: Executor, name: str, until: dt.datetime) -> None:
    """Record that scan `name` covered everything up to `until`; never moves it back (several
    nodes scan at once and finish in any order)."""
    await conn.execute(
        """INSERT INTO scan_watermarks (name, scanned_until) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE
             SET scanned_until = GREATEST(scan_watermarks.scanned_until, EXCLUDED.scanned_until),
                 updated_at = NOW()""",
        name,
        until,
    )
