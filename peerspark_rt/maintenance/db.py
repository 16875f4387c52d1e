"""SQL for the periodic jobs: the daily analytics rollup and the clean-up."""

from __future__ import annotations

import datetime as dt

from ..infra.dbtypes import Executor


def _count(status: str) -> int:
    return int(status.split()[-1])


async def rollup_day(conn: Executor, day: dt.date) -> int:
    """(Re)compute study_analytics for every user active on `day` (UTC). Idempotent: a second
    run for the same day overwrites the first with the same numbers."""
    lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    hi = lo + dt.timedelta(days=1)
    status = await conn.execute(
        """
        WITH study AS (
            SELECT p.user_id,
                   SUM(CASE WHEN p.attendance_seconds > 0 THEN p.attendance_seconds
                            ELSE COALESCE(p.attendance_duration, 0) * 60 END) / 60 AS minutes,
                   COUNT(*) FILTER (WHERE p.status = 'attended' OR s.status = 'completed')
                       AS completed,
                   array_remove(array_agg(DISTINCT pd.subject), NULL) AS subjects,
                   array_remove(array_agg(DISTINCT s.pod_id::text), NULL) AS pods
              FROM session_participants p
              JOIN study_sessions s ON s.id = p.session_id
              LEFT JOIN pods pd ON pd.id = s.pod_id
             WHERE s.start_time >= $1 AND s.start_time < $2
               AND COALESCE(p.status, 'invited') NOT IN ('declined', 'invited', 'missed')
             GROUP BY p.user_id),
        wrote AS (
            SELECT author_id AS user_id, count(*) AS n,
                   array_remove(array_agg(DISTINCT pod_id::text), NULL) AS pods
              FROM posts WHERE created_at >= $1 AND created_at < $2 GROUP BY author_id),
        commented AS (
            SELECT author_id AS user_id, count(*) AS n
              FROM comments WHERE created_at >= $1 AND created_at < $2 GROUP BY author_id),
        asked AS (
            SELECT c.user_id, count(*) AS n
              FROM ai_messages m JOIN ai_conversations c ON c.id = m.conversation_id
             WHERE m.role = 'user' AND m.created_at >= $1 AND m.created_at < $2
             GROUP BY c.user_id),
        opened AS (
            SELECT user_id, count(*) AS n FROM analytics_events
             WHERE event IN ('resource_view', 'resource_download', 'resource_accessed')
               AND created_at >= $1 AND created_at < $2 AND user_id IS NOT NULL
             GROUP BY user_id),
        active AS (
            SELECT user_id FROM study UNION SELECT user_id FROM wrote
            UNION SELECT user_id FROM commented UNION SELECT user_id FROM asked
            UNION SELECT user_id FROM opened)
        INSERT INTO study_analytics
            (user_id, date, study_time_minutes, sessions_completed, subjects_studied,
             pods_active, resources_accessed, ai_queries_made, posts_created, comments_made,
             streak_days)
        SELECT a.user_id, $3::date,
               COALESCE(st.minutes, 0), COALESCE(st.completed, 0),
               COALESCE(st.subjects, '{}'),
               ARRAY(SELECT DISTINCT x FROM unnest(COALESCE(st.pods, '{}')
                                                   || COALESCE(w.pods, '{}')) AS x ORDER BY x),
               COALESCE(o.n, 0), COALESCE(q.n, 0), COALESCE(w.n, 0), COALESCE(c.n, 0),
               CASE WHEN COALESCE(st.minutes, 0) > 0 OR COALESCE(st.completed, 0) > 0
                    THEN COALESCE(prev.streak_days, 0) + 1 ELSE 0 END
          FROM active a
          JOIN users u ON u.id = a.user_id
          LEFT JOIN study st ON st.user_id = a.user_id
          LEFT JOIN wrote w ON w.user_id = a.user_id
          LEFT JOIN commented c ON c.user_id = a.user_id
          LEFT JOIN asked q ON q.user_id = a.user_id
          LEFT JOIN opened o ON o.user_id = a.user_id
          LEFT JOIN study_analytics prev
                 ON prev.user_id = a.user_id AND prev.date = $3::date - 1
        ON CONFLICT (user_id, date) DO UPDATE SET
            study_time_minutes = EXCLUDED.study_time_minutes,
            sessions_completed = EXCLUDED.sessions_completed,
            subjects_studied = EXCLUDED.subjects_studied,
            pods_active = EXCLUDED.pods_active,
            resources_accessed = EXCLUDED.resources_accessed,
            ai_queries_made = EXCLUDED.ai_queries_made,
            posts_created = EXCLUDED.posts_created,
            comments_made = EXCLUDED.comments_made,
            streak_days = EXCLUDED.streak_days
        """,
        lo,
        hi,
        day,
    )
    return _count(status)


async def delete_expired_sessions(conn: Executor) -> int:
    """Login sessions whose refresh token has expired (their tokens can no longer be used)."""
    return _count(await conn.execute("DELETE FROM user_sessions WHERE expires_at < NOW()"))


async def expire_invitations(conn: Executor) -> int:
    return _count(
        await conn.execute(
            """UPDATE pod_invitations SET status = 'expired'
                WHERE status = 'pending' AND expires_at < NOW()"""
        )
    )


async def delete_old_deliveries(conn: Executor, before: dt.datetime) -> int:
    return _count(await conn.execute("DELETE FROM reminder_deliveries WHERE fired_at < $1", before))
