"""SQL for content reports (the moderators' queue)."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from ...infra.dbtypes import Conn, Executor

REPORT_COLUMNS = """r.id, r.reporter_id, r.content_id, r.content_type, r.reason, r.description,
    r.status, r.reviewed_by, r.reviewed_at, r.resolution, r.created_at, r.pod_id,
    ru.username AS reporter_username"""


async def insert(
    conn: Conn,
    *,
    reporter_id: uuid.UUID,
    content_type: str,
    content_id: uuid.UUID,
    pod_id: uuid.UUID | None,
    reason: str,
    description: str | None,
    weight: float,
) -> uuid.UUID | None:
    """The new report's id, or None when this reporter already has a pending report on it."""
    report_id: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO content_reports (reporter_id, content_type, content_id, pod_id, reason,
                                        description, weight)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (content_type, content_id, reporter_id) WHERE status = 'pending'
           DO NOTHING RETURNING id""",
        reporter_id,
        content_type,
        content_id,
        pod_id,
        reason,
        description,
        weight,
    )
    return report_id


async def pending_count(
    conn: Executor, content_type: str, content_id: uuid.UUID
) -> tuple[int, float]:
    """How many pending reports the content has, and their summed weight."""
    row = await conn.fetchrow(
        """SELECT count(*) AS n, COALESCE(sum(weight), 0) AS weight FROM content_reports
           WHERE content_type = $1 AND content_id = $2 AND status = 'pending'""",
        content_type,
        content_id,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return int(row["n"]), float(row["weight"])


async def reporter_standing(db: Executor, reporter_id: uuid.UUID) -> asyncpg.Record | None:
    """What a reporter's weight is made of: account age, verified email, platform role, and
    how their past reports were resolved."""
    return await db.fetchrow(
        """SELECT EXTRACT(EPOCH FROM NOW() - u.created_at) / 86400 AS age_days,
                  COALESCE(u.is_verified, FALSE) AS verified, u.role,
                  count(r.id) FILTER (WHERE r.resolution = 'removed') AS upheld,
                  count(r.id) FILTER (WHERE r.resolution = 'restored') AS rejected
           FROM users u
           LEFT JOIN content_reports r ON r.reporter_id = u.id AND r.status = 'resolved'
           WHERE u.id = $1
           GROUP BY u.id""",
        reporter_id,
    )


async def lock(conn: Conn, report_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, content_type, content_id, pod_id, status FROM content_reports
           WHERE id = $1 FOR UPDATE""",
        report_id,
    )


async def resolve_pending(
    conn: Conn,
    content_type: str,
    content_id: uuid.UUID,
    *,
    reviewer: uuid.UUID | None,
    resolution: str,
) -> int:
    """Close every pending report on the content; returns how many were closed."""
    result = await conn.execute(
        """UPDATE content_reports
           SET status = 'resolved', resolution = $3, reviewed_by = $4, reviewed_at = NOW()
           WHERE content_type = $1 AND content_id = $2 AND status = 'pending'""",
        content_type,
        content_id,
        resolution,
        reviewer,
    )
    return int(result.split()[-1])


async def page(
    db: Executor,
    *,
    pod_ids: list[uuid.UUID] | None,
    status: str,
    content_type: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Reports newest first. `pod_ids` None: every report (platform moderators); else only
    those about content in these pods."""
    keyset = "AND (r.created_at, r.id) < ($5::timestamptz, $6::uuid)" if after else ""
    pods = "AND r.pod_id = ANY($2::uuid[])" if pod_ids is not None else "AND $2::uuid[] IS NULL"
    return await db.fetch(
        f"""SELECT {REPORT_COLUMNS},
                   (SELECT count(*) FROM content_reports o
                    WHERE o.content_type = r.content_type AND o.content_id = r.content_id
                      AND o.status = 'pending') AS pending_reports
            FROM content_reports r LEFT JOIN users ru ON ru.id = r.reporter_id
            WHERE r.status = $1 {pods}
              AND ($3::text IS NULL OR r.content_type = $3) {keyset}
            ORDER BY r.created_at DESC, r.id DESC LIMIT $4""",  # noqa: S608 (composed of constants; values are parameters)
        status,
        pod_ids,
        content_type,
        limit,
        *(after or ()),
    )


async def moderated_pod_ids(
    db: Executor, user_id: uuid.UUID, roles: tuple[str, ...]
) -> list[uuid.UUID]:
    """The pods where the user is an active member with one of `roles` (the moderating ones)."""
    rows = await db.fetch(
        """SELECT pod_id FROM pod_memberships WHERE user_id = $1 AND status = 'active'
             AND role = ANY($2::text[])""",
        user_id,
        list(roles),
    )
    return [r["pod_id"] for r in rows]


async def platform_moderator_ids(db: Executor, limit: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        """SELECT id FROM users WHERE role IN ('moderator', 'admin') AND account_status = 'active'
           ORDER BY created_at LIMIT $1""",
        limit,
    )
    return [r["id"] for r in rows]
