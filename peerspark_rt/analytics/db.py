"""SQL for the event log: writing events with their local day, spans and dirty marks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from ..infra.dbtypes import Conn, Executor


class EventRow(Protocol):
    """What an event to insert carries (events.NewEvent)."""

    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def occurred_at(self) -> dt.datetime: ...
    @property
    def pod_id(self) -> uuid.UUID | None: ...
    @property
    def session_id(self) -> uuid.UUID | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def dedupe_key(self) -> str | None: ...


def events_ctes(source: str) -> str:
    """The CTEs that write events, for a statement of its own (`insert_events`) or one that
    writes what the events are about as well (the chat store's): `ev_input`, the events of
    `source` with their ids, pods and users' local times; `ev_written`, those new by user,
    kind and dedupe key; `ev_dirty`, their users' days marked out of date. `source` is a FROM
    item named `t` with columns user_id, kind, at, pod_id, session_id, value, meta, dedupe_key
    and i (the event's place in the input). An event of a session without a pod given gets
    the session's pod. Ids are drawn before the insert so each written row can be matched to
    its input (`EVENTS_WRITTEN`)."""
    return f"""ev_input AS (
            SELECT nextval('analytics_events_id_seq') AS id, t.user_id, t.kind, t.at,
                   COALESCE(t.pod_id, (SELECT s.pod_id FROM study_sessions s
                                        WHERE s.id = t.session_id)) AS pod_id,
                   t.session_id, t.value, t.meta, t.dedupe_key, t.i,
                   t.at AT TIME ZONE COALESCE(z.name, 'UTC') AS local, z.name AS timezone
              FROM {source}
              LEFT JOIN users u ON u.id = t.user_id
              LEFT JOIN peerspark_zones z ON z.name = u.timezone),
        ev_written AS (
            INSERT INTO analytics_events
                (id, user_id, event, properties, created_at, occurred_at, local_date,
                 local_hour, pod_id, session_id, value, dedupe_key)
            SELECT id, user_id, kind, meta, NOW(), at, local::date,
                   extract(hour FROM local)::smallint, pod_id, session_id, value, dedupe_key
              FROM ev_input ORDER BY i
            ON CONFLICT (user_id, event, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
            RETURNING id, user_id, local_date, local_hour),
        ev_dirty AS (
            INSERT INTO analytics_dirty (user_id, day)
            SELECT DISTINCT user_id, local_date FROM ev_written WHERE user_id IS NOT NULL)"""  # noqa: S608 (composed of constants; values are parameters)


# A written event as it comes back (for `events.Analytics.announce_written`): its place in the
# input (i, from 1), id, local_date, local_hour, the user's timezone and the event's pod.
EVENTS_WRITTEN = """SELECT ev_input.i, ev_written.id, ev_written.local_date,
               ev_written.local_hour, ev_input.timezone, ev_input.pod_id
          FROM ev_written JOIN ev_input USING (id)"""

_EVENTS_GIVEN = """unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::uuid[],
                          $6::float8[], $7::jsonb[], $8::text[])
                   WITH ORDINALITY AS t(user_id, kind, at, pod_id, session_id, value, meta,
                                        dedupe_key, i)"""
_INSERT_EVENTS = f"WITH {events_ctes(_EVENTS_GIVEN)}\n        {EVENTS_WRITTEN} ORDER BY ev_input.i"


async def insert_events(conn: Conn, events: Sequence[EventRow]) -> list[tuple[int, asyncpg.Record]]:
    """Insert the events that are new (by user, kind and dedupe key) and mark their users'
    days out of date, in one statement: (input index, row as `EVENTS_WRITTEN` has it) for
    each one written."""
    rows = await conn.fetch(
        _INSERT_EVENTS,
        [e.user_id for e in events],
        [str(e.kind) for e in events],
        [e.occurred_at for e in events],
        [e.pod_id for e in events],
        [e.session_id for e in events],
        [e.value for e in events],
        [e.meta for e in events],
        [e.dedupe_key for e in events],
    )
    return [(int(r["i"]) - 1, r) for r in rows]


async def insert_spans(
    conn: Conn, spans: Sequence[tuple[int, uuid.UUID, dt.date, int, int, str | None]]
) -> None:
    await conn.execute(
        """INSERT INTO analytics_spans (event_id, user_id, local_date, local_hour, seconds, subject)
           SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::date[], $4::smallint[],
                                $5::int[], $6::text[])""",
        [s[0] for s in spans],
        [s[1] for s in spans],
        [s[2] for s in spans],
        [s[3] for s in spans],
        [s[4] for s in spans],
        [s[5] for s in spans],
    )


async def mark_dirty(conn: Conn, pairs: Sequence[tuple[uuid.UUID, dt.date]]) -> None:
    """These users' days need their rollup recomputed."""
    await conn.execute(
        "INSERT INTO analytics_dirty (user_id, day) SELECT * FROM unnest($1::uuid[], $2::date[])",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )


# --- rollups ----------------------------------------------------------------------------------

# What makes a member active in a pod: a message, a post, a comment, attending a session.
ACTIVE_IN_POD = (
    "message_sent",
    "post_created",
    "comment_created",
    "session_joined",
    "session_left",
)


async def take_dirty(conn: Conn, limit: int) -> list[tuple[uuid.UUID, dt.date]]:
    """Take up to `limit` marks of out-of-date days (several workers take different ones)."""
    rows = await conn.fetch(
        """DELETE FROM analytics_dirty WHERE id IN (
               SELECT id FROM analytics_dirty ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING user_id, day""",
        limit,
    )
    return [(r["user_id"], r["day"]) for r in rows]


async def mark_day_dirty(conn: Conn, day: dt.date) -> int:
    """Every user with an event or time on local `day` (a rebuild of that day)."""
    status = await conn.execute(
        """INSERT INTO analytics_dirty (user_id, day)
           SELECT DISTINCT user_id, $1::date FROM (
               SELECT user_id FROM analytics_events WHERE local_date = $1 AND user_id IS NOT NULL
               UNION SELECT user_id FROM analytics_spans WHERE local_date = $1
                                                          AND user_id IS NOT NULL) x""",
        day,
    )
    return int(status.split()[-1])


# Study time: attendance in live session rooms, plus focus blocks completed alone (a block in a
# session room is inside its attendance already).
_STUDY_SPAN = """(e.event = 'session_left'
                  OR (e.event = 'focus_block_completed' AND e.session_id IS NULL))"""

ROLLUP_DAY = f"""
WITH who AS (SELECT DISTINCT unnest($2::uuid[]) AS user_id),
ev AS (
    SELECT e.user_id,
           count(*) AS events,
           count(*) FILTER (WHERE e.event = 'post_created') AS posts,
           count(*) FILTER (WHERE e.event = 'comment_created') AS comments,
           count(*) FILTER (WHERE e.event = 'comment_received') AS comments_received,
           count(*) FILTER (WHERE e.event = 'like_received') AS likes_received,
           count(*) FILTER (WHERE e.event = 'message_sent') AS messages,
           count(*) FILTER (WHERE e.event = 'ai_query') AS ai_queries,
           count(*) FILTER (WHERE e.event = 'focus_block_completed') AS focus_done,
           count(*) FILTER (WHERE e.event = 'focus_block_abandoned') AS focus_abandoned,
           count(DISTINCT e.properties->>'resourceId')
               FILTER (WHERE e.event IN ('resource_viewed', 'resource_downloaded')) AS resources,
           array_remove(array_agg(DISTINCT e.pod_id::text), NULL) AS pods
      FROM analytics_events e JOIN who ON who.user_id = e.user_id
     WHERE e.local_date = $1
     GROUP BY e.user_id),
spans AS (
    SELECT sp.user_id, sp.local_hour, sp.seconds, sp.subject, e.session_id, e.event
      FROM analytics_spans sp
      JOIN who ON who.user_id = sp.user_id
      JOIN analytics_events e ON e.id = sp.event_id
     WHERE sp.local_date = $1 AND {_STUDY_SPAN}),
study AS (
    SELECT user_id, sum(seconds)::int AS seconds,
           count(DISTINCT session_id) FILTER (WHERE event = 'session_left') AS sessions
      FROM spans GROUP BY user_id),
by_hour AS (
    SELECT user_id, local_hour, sum(seconds) AS seconds FROM spans GROUP BY user_id, local_hour),
-- (joined, not a subquery per user and hour: that read every span of the batch 24 times a
-- user, and a busy day's rollup grew with users x spans)
hourly AS (
    SELECT who.user_id, array_agg(COALESCE(bh.seconds, 0)::int ORDER BY h) AS seconds
      FROM who CROSS JOIN generate_series(0, 23) AS h
      LEFT JOIN by_hour bh ON bh.user_id = who.user_id AND bh.local_hour = h
     GROUP BY who.user_id),
subjects AS (
    SELECT user_id, jsonb_object_agg(subject, seconds) AS seconds,
           array_agg(subject ORDER BY subject) AS names
      FROM (SELECT user_id, subject, sum(seconds)::int AS seconds FROM spans
             WHERE subject IS NOT NULL GROUP BY user_id, subject) x
     GROUP BY user_id),
fresh AS (
    SELECT who.user_id,
           COALESCE(st.seconds, 0) AS study_seconds,
           COALESCE(st.sessions, 0) AS sessions,
           ev.events, ev.posts, ev.comments, ev.comments_received, ev.likes_received,
           ev.messages, ev.ai_queries, ev.focus_done, ev.focus_abandoned, ev.resources, ev.pods
      FROM who LEFT JOIN ev ON ev.user_id = who.user_id
      LEFT JOIN study st ON st.user_id = who.user_id
     WHERE ev.user_id IS NOT NULL OR st.user_id IS NOT NULL),
old AS (
    SELECT user_id, streak_days FROM study_analytics
     WHERE date = $1 AND user_id = ANY($2::uuid[])),
gone AS (
    DELETE FROM study_analytics sa USING who
     WHERE sa.user_id = who.user_id AND sa.date = $1
       AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.user_id = who.user_id)
    RETURNING sa.user_id, 0 AS streak_days),
written AS (
    INSERT INTO study_analytics AS sa
        (user_id, date, study_time_minutes, study_seconds, sessions_completed, focus_score,
         focus_blocks_completed, focus_blocks_abandoned, subjects_studied, subject_seconds,
         hourly_seconds, pods_active, resources_accessed, ai_queries_made, posts_created,
         comments_made, comments_received, likes_received, messages_sent, events, streak_days,
         updated_at)
    SELECT f.user_id, $1, f.study_seconds / 60, f.study_seconds, f.sessions,
           CASE WHEN COALESCE(f.focus_done, 0) + COALESCE(f.focus_abandoned, 0) > 0
                THEN round(100.0 * f.focus_done / (f.focus_done + f.focus_abandoned), 2) END,
           COALESCE(f.focus_done, 0), COALESCE(f.focus_abandoned, 0),
           COALESCE(sj.names, '{{}}'), COALESCE(sj.seconds, '{{}}'),
           h.seconds, COALESCE(f.pods, '{{}}'), COALESCE(f.resources, 0),
           COALESCE(f.ai_queries, 0), COALESCE(f.posts, 0), COALESCE(f.comments, 0),
           COALESCE(f.comments_received, 0), COALESCE(f.likes_received, 0),
           COALESCE(f.messages, 0), COALESCE(f.events, 0),
           CASE WHEN f.study_seconds > 0 THEN COALESCE(prev.streak_days, 0) + 1 ELSE 0 END,
           NOW()
      FROM fresh f
      JOIN users u ON u.id = f.user_id
      JOIN hourly h ON h.user_id = f.user_id
      LEFT JOIN subjects sj ON sj.user_id = f.user_id
      LEFT JOIN study_analytics prev ON prev.user_id = f.user_id AND prev.date = $1 - 1
    ON CONFLICT (user_id, date) DO UPDATE SET
        study_time_minutes = EXCLUDED.study_time_minutes,
        study_seconds = EXCLUDED.study_seconds,
        sessions_completed = EXCLUDED.sessions_completed,
        focus_score = EXCLUDED.focus_score,
        focus_blocks_completed = EXCLUDED.focus_blocks_completed,
        focus_blocks_abandoned = EXCLUDED.focus_blocks_abandoned,
        subjects_studied = EXCLUDED.subjects_studied,
        subject_seconds = EXCLUDED.subject_seconds,
        hourly_seconds = EXCLUDED.hourly_seconds,
        pods_active = EXCLUDED.pods_active,
        resources_accessed = EXCLUDED.resources_accessed,
        ai_queries_made = EXCLUDED.ai_queries_made,
        posts_created = EXCLUDED.posts_created,
        comments_made = EXCLUDED.comments_made,
        comments_received = EXCLUDED.comments_received,
        likes_received = EXCLUDED.likes_received,
        messages_sent = EXCLUDED.messages_sent,
        events = EXCLUDED.events,
        streak_days = EXCLUDED.streak_days,
        updated_at = NOW()
    RETURNING sa.user_id, sa.streak_days)
SELECT n.user_id FROM (SELECT * FROM written UNION ALL SELECT * FROM gone) n
  LEFT JOIN old ON old.user_id = n.user_id
 WHERE old.streak_days IS DISTINCT FROM n.streak_days
"""  # noqa: S608 (composed of constants; values are parameters)


async def rollup_day(conn: Conn, day: dt.date, users: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Recompute these users' study_analytics rows for their local `day` from the events and
    spans of that day (a row with nothing left is deleted). Returns the users whose streak
    changed (their next day's streak depends on it)."""
    rows = await conn.fetch(ROLLUP_DAY, day, list(users))
    return [r["user_id"] for r in rows]


CONTRIBUTIONS_DAY = """
WITH pts AS (
    SELECT e.pod_id, e.user_id,
           sum(w.points + CASE WHEN w.per_ten_minutes
                               THEN floor(COALESCE(e.value, 0) / 10) ELSE 0 END)::int AS points
      FROM analytics_events e
      JOIN unnest($3::text[], $4::int[], $5::bool[]) AS w(kind, points, per_ten_minutes)
        ON w.kind = e.event
     WHERE e.local_date = $1 AND e.user_id = ANY($2::uuid[]) AND e.pod_id IS NOT NULL
     GROUP BY e.pod_id, e.user_id),
gone AS (
    DELETE FROM pod_contributions c
     WHERE c.date = $1 AND c.user_id = ANY($2::uuid[])
       AND NOT EXISTS (SELECT 1 FROM pts WHERE pts.pod_id = c.pod_id AND pts.user_id = c.user_id)
    RETURNING c.pod_id, c.user_id),
put AS (
    INSERT INTO pod_contributions (pod_id, user_id, date, points)
    SELECT pts.pod_id, pts.user_id, $1, pts.points FROM pts JOIN pods p ON p.id = pts.pod_id
    ON CONFLICT (user_id, date, pod_id) DO UPDATE SET points = EXCLUDED.points
    RETURNING pod_id, user_id)
SELECT DISTINCT pod_id, user_id FROM (SELECT * FROM gone UNION ALL SELECT * FROM put) x
ORDER BY pod_id, user_id
"""


async def contributions_day(
    conn: Conn,
    day: dt.date,
    users: Sequence[uuid.UUID],
    points: dict[str, tuple[int, bool]],
) -> int:
    """Recompute these users' pod points of local `day`, then their memberships' scores
    (the sum over all their days in the pod). Returns how many memberships were touched."""
    kinds = sorted(points)
    pairs = await conn.fetch(
        CONTRIBUTIONS_DAY,
        day,
        list(users),
        kinds,
        [points[k][0] for k in kinds],
        [points[k][1] for k in kinds],
    )
    if not pairs:
        return 0
    # (and when they were last active there: the latest act of that day, if later)
    await conn.execute(
        """UPDATE pod_memberships m
           SET contribution_score = COALESCE((SELECT sum(c.points) FROM pod_contributions c
                                               WHERE c.pod_id = m.pod_id
                                                 AND c.user_id = m.user_id), 0),
               last_active_at = GREATEST(m.last_active_at, (
                   SELECT max(e.occurred_at) FROM analytics_events e
                    WHERE e.user_id = m.user_id AND e.local_date = $3 AND e.pod_id = m.pod_id
                      AND e.event = ANY($4::text[])))
           FROM unnest($1::uuid[], $2::uuid[]) AS t(pod_id, user_id)
           WHERE m.pod_id = t.pod_id AND m.user_id = t.user_id""",
        [r["pod_id"] for r in pairs],
        [r["user_id"] for r in pairs],
        day,
        list(ACTIVE_IN_POD),
    )
    return len(pairs)


# --- pods -------------------------------------------------------------------------------------

# What makes a member active in a pod: a message, a post, a comment, attending a session.
ACTIVE_IN_POD = (
    "message_sent",
    "post_created",
    "comment_created",
    "session_joined",
    "session_left",
)


async def pod_figures(db: Executor, pod_id: uuid.UUID, days: int) -> asyncpg.Record:
    """A pod's members, who of them was active in the last `days` days, its sessions and
    resources, and its joins and departures in the last 30 days (from the event log)."""
    row = await db.fetchrow(
        """SELECT
             (SELECT count(*) FROM pod_memberships WHERE pod_id = $1 AND status = 'active')
               AS member_count,
             (SELECT count(DISTINCT e.user_id) FROM analytics_events e
                JOIN pod_memberships m ON m.pod_id = e.pod_id AND m.user_id = e.user_id
                                      AND m.status = 'active'
               WHERE e.pod_id = $1 AND e.occurred_at > NOW() - make_interval(days => $2)
                 AND e.event = ANY($3::text[])) AS active_members,
             (SELECT count(*) FROM study_sessions WHERE pod_id = $1 AND status <> 'cancelled')
               AS total_sessions,
             (SELECT count(*) FROM resources WHERE pod_id = $1 AND status = 'active')
               AS total_resources,
             (SELECT count(*) FROM analytics_events WHERE pod_id = $1 AND event = 'pod_joined'
                AND occurred_at > NOW() - interval '30 days') AS joined_30,
             (SELECT count(*) FROM analytics_events WHERE pod_id = $1 AND event = 'pod_left'
                AND occurred_at > NOW() - interval '30 days') AS left_30,
             (SELECT count(*) FROM posts WHERE pod_id = $1 AND status = 'published'
                AND created_at > NOW() - interval '30 days') AS posts_30""",
        pod_id,
        days,
        list(ACTIVE_IN_POD),
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def top_contributors(db: Executor, pod_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT m.user_id, u.username, m.contribution_score
           FROM pod_memberships m JOIN users u ON u.id = m.user_id
           WHERE m.pod_id = $1 AND m.status = 'active' AND m.contribution_score > 0
           ORDER BY m.contribution_score DESC, m.joined_at, m.user_id LIMIT $2""",
        pod_id,
        limit,
    )


# --- dashboards -------------------------------------------------------------------------------


async def user_zone(db: Executor, user_id: uuid.UUID) -> str:
    zone: str | None = await db.fetchval("SELECT timezone FROM users WHERE id = $1", user_id)
    return zone or "UTC"


async def daily_rows(
    db: Executor, user_id: uuid.UUID, first: dt.date, last: dt.date
) -> list[asyncpg.Record]:
    """The user's rollup rows from `first` to `last` (their local days)."""
    return await db.fetch(
        """SELECT date, study_seconds, hourly_seconds, subject_seconds, focus_blocks_completed,
                  focus_blocks_abandoned, posts_created, comments_received, likes_received
           FROM study_analytics WHERE user_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date""",
        user_id,
        first,
        last,
    )


async def session_figures(db: Executor, user_id: uuid.UUID, since: dt.datetime) -> asyncpg.Record:
    """Sessions attended since `since` (present in their room) with the minutes there, and
    the sessions ahead the user takes part in."""
    row = await db.fetchrow(
        """SELECT
             (SELECT count(DISTINCT session_id) FROM analytics_events
               WHERE user_id = $1 AND event = 'session_left' AND occurred_at >= $2)
               AS attended,
             (SELECT COALESCE(sum(value), 0) FROM analytics_events
               WHERE user_id = $1 AND event = 'session_left' AND occurred_at >= $2) AS minutes,
             (SELECT count(*) FROM session_participants p
                JOIN study_sessions s ON s.id = p.session_id
               WHERE p.user_id = $1 AND p.status <> 'declined' AND s.status = 'scheduled'
                 AND s.start_time > NOW()) AS scheduled""",
        user_id,
        since,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


ACHIEVEMENT_COLUMNS = """a.id, a.name, a.description, a.icon, a.category, a.points, a.rarity"""


async def earned_achievements(db: Executor, user_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {ACHIEVEMENT_COLUMNS}, ua.earned_at, count(*) OVER () AS total
            FROM user_achievements ua JOIN achievements a ON a.id = ua.achievement_id
            WHERE ua.user_id = $1 ORDER BY ua.earned_at DESC, a.id LIMIT $2""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        limit,
    )


async def next_achievement(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The active achievement not yet earned that is worth the fewest points."""
    return await db.fetchrow(
        f"""SELECT {ACHIEVEMENT_COLUMNS}, NULL::timestamptz AS earned_at
            FROM achievements a
            WHERE a.is_active AND NOT EXISTS (SELECT 1 FROM user_achievements ua
                                               WHERE ua.user_id = $1 AND ua.achievement_id = a.id)
            ORDER BY a.points, a.name, a.id LIMIT 1""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
    )


# --- the platform (admins) --------------------------------------------------------------------


async def platform_days(
    db: Executor, since: dt.datetime, until: dt.datetime
) -> dict[str, list[asyncpg.Record]]:
    """Events by UTC day and kind, active users by day (and in all), time studied by day,
    sessions completed by day and the user count, from `since` to `until`."""
    kinds = await db.fetch(
        """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, event, count(*) AS n
           FROM analytics_events WHERE occurred_at >= $1 AND occurred_at < $2
           GROUP BY 1, 2 ORDER BY 1, 2""",
        since,
        until,
    )
    active = await db.fetch(
        """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(DISTINCT user_id) AS n
           FROM analytics_events WHERE occurred_at >= $1 AND occurred_at < $2
           GROUP BY ROLLUP (1) ORDER BY 1""",
        since,
        until,
    )
    study = await db.fetch(
        f"""SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, sum(sp.seconds) AS seconds
            FROM analytics_spans sp JOIN analytics_events e ON e.id = sp.event_id
            WHERE e.occurred_at >= $1 AND e.occurred_at < $2 AND {_STUDY_SPAN}
            GROUP BY 1 ORDER BY 1""",  # noqa: S608 (composed of constants; values are parameters)
        since,
        until,
    )
    sessions = await db.fetch(
        """SELECT (ended_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM study_sessions
           WHERE status = 'completed' AND ended_at >= $1 AND ended_at < $2
           GROUP BY 1 ORDER BY 1""",
        since,
        until,
    )
    users = await db.fetch("SELECT count(*) AS n FROM users")
    return {"kinds": kinds, "active": active, "study": study, "sessions": sessions, "users": users}
