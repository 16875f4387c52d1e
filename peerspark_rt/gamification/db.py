"""SQL for gamification: the user's game state, point awards, leaderboard totals, achievements,
challenges, follows and leagues."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..infra.dbtypes import Conn, Executor

# ------------------------------------------------------------------------------ state


async def lock_state(conn: Conn, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The user's game row, created if missing and locked for this transaction (every change
    to a user's points, streak or badges happens under this lock); None for an unknown user."""
    await conn.execute(
        """INSERT INTO user_gamification (user_id)
           SELECT $1 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
           ON CONFLICT (user_id) DO NOTHING""",
        user_id,
    )
    return await conn.fetchrow(
        """SELECT g.*, u.timezone FROM user_gamification g JOIN users u ON u.id = g.user_id
           WHERE g.user_id = $1 FOR UPDATE OF g""",
        user_id,
    )


async def state(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT g.*, u.timezone FROM users u
           LEFT JOIN user_gamification g ON g.user_id = u.id WHERE u.id = $1""",
        user_id,
    )


async def save_state(
    conn: Conn,
    user_id: uuid.UUID,
    *,
    total_points: int,
    level: int,
    experience_points: int,
    study_streak: int,
    longest_streak: int,
    last_study_date: dt.date | None,
    streak_freezes: int,
) -> None:
    await conn.execute(
        """UPDATE user_gamification SET total_points = $2, level = $3, experience_points = $4,
                  study_streak = $5, longest_streak = $6, last_study_date = $7,
                  streak_freezes = $8, updated_at = NOW()
           WHERE user_id = $1""",
        user_id,
        total_points,
        level,
        experience_points,
        study_streak,
        longest_streak,
        last_study_date,
        streak_freezes,
    )


async def is_applied(conn: Conn, user_id: uuid.UUID, source: str, key: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM point_awards WHERE user_id = $1 AND source = $2 AND source_key = $3",
        user_id,
        source,
        key,
    )
    return found is not None


async def points_of_kind_on(conn: Conn, user_id: uuid.UUID, day: dt.date, kind: str) -> int:
    total = await conn.fetchval(
        """SELECT COALESCE(SUM(points), 0) FROM point_awards
           WHERE user_id = $1 AND local_date = $2 AND kind = $3""",
        user_id,
        day,
        kind,
    )
    return int(total)


async def insert_award(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    source: str,
    source_key: str,
    kind: str,
    pod_id: uuid.UUID | None,
    local_date: dt.date,
    awarded_at: dt.datetime,
    points: int,
    study_minutes: int,
) -> bool:
    """Record an award; False when this (source, key) was awarded to the user before."""
    row = await conn.fetchval(
        """INSERT INTO point_awards (user_id, source, source_key, kind, pod_id, local_date,
                                     awarded_at, points, study_minutes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (user_id, source, source_key) DO NOTHING RETURNING id""",
        user_id,
        source,
        source_key,
        kind,
        pod_id,
        local_date,
        awarded_at,
        points,
        study_minutes,
    )
    return row is not None


async def boards_of(conn: Conn, user_id: uuid.UUID) -> list[tuple[str, str, str]]:
    """The boards (metric, scope, period) a user has a total on."""
    rows = await conn.fetch(
        "SELECT metric, scope, period FROM leaderboard_scores WHERE user_id = $1", user_id
    )
    return [(r["metric"], r["scope"], r["period"]) for r in rows]


async def add_scores(
    conn: Conn, user_id: uuid.UUID, deltas: Sequence[tuple[str, str, str, int]]
) -> list[asyncpg.Record]:
    """Add to the user's leaderboard totals ((metric, scope, period, delta) each); returns
    the new totals (metric, scope, period, score)."""
    if not deltas:
        return []
    return await conn.fetch(
        """INSERT INTO leaderboard_scores AS s (metric, scope, period, user_id, score)
           SELECT d.metric, d.scope, d.period, $1, d.delta
           FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[])
                AS d(metric, scope, period, delta)
           ON CONFLICT (metric, scope, period, user_id)
           DO UPDATE SET score = s.score + EXCLUDED.score
           RETURNING metric, scope, period, score""",
        user_id,
        [d[0] for d in deltas],
        [d[1] for d in deltas],
        [d[2] for d in deltas],
        [d[3] for d in deltas],
    )


async def unapplied_events(
    db: Executor, after_id: int, kinds: Sequence[str], limit: int
) -> list[asyncpg.Record]:
    """Events after `after_id` (of `kinds`), each with whether it was applied yet."""
    return await db.fetch(
        """SELECT e.id, e.user_id, e.event, e.occurred_at, e.local_date, e.local_hour,
                  e.pod_id, e.session_id, e.value, e.dedupe_key, e.created_at,
                  EXISTS (SELECT 1 FROM point_awards a WHERE a.user_id = e.user_id
                          AND a.source = 'event' AND a.source_key = e.id::text) AS applied
           FROM analytics_events e
           WHERE e.id > $1 AND e.event = ANY($2::text[]) AND e.user_id IS NOT NULL
           ORDER BY e.id LIMIT $3""",
        after_id,
        list(kinds),
        limit,
    )


async def cursor(db: Executor, name: str) -> int:
    value = await db.fetchval("SELECT event_id FROM gamification_cursor WHERE name = $1", name)
    if value is None:
        start = await db.fetchval("SELECT COALESCE(MIN(id), 1) - 1 FROM analytics_events")
        return int(start)
    return int(value)


async def set_cursor(db: Executor, name: str, event_id: int) -> None:
    await db.execute(
        """INSERT INTO gamification_cursor (name, event_id) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET event_id = GREATEST(gamification_cursor.event_id,
                                                                EXCLUDED.event_id)""",
        name,
        event_id,
    )


async def lapsed_streaks(
    db: Executor, before: dt.date, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Users with a streak whose last study day is before `before` (the caller checks each
    user's own day), by user id after `after`."""
    return await db.fetch(
        """SELECT g.user_id FROM user_gamification g
           WHERE g.study_streak > 0 AND g.last_study_date < $1
             AND ($2::uuid IS NULL OR g.user_id > $2)
           ORDER BY g.user_id LIMIT $3""",
        before,
        after,
        limit,
    )


# ------------------------------------------------------------------------------ leaderboards


async def scores_page(
    db: Executor, metric: str, scope: str, period: str, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """A period's totals by user id (a rebuild reads them in pages)."""
    return await db.fetch(
        """SELECT user_id, score FROM leaderboard_scores
           WHERE metric = $1 AND scope = $2 AND period = $3 AND score > 0
             AND ($4::uuid IS NULL OR user_id > $4)
           ORDER BY user_id LIMIT $5""",
        metric,
        scope,
        period,
        after,
        limit,
    )


async def streaks_page(db: Executor, after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT user_id, study_streak AS score FROM user_gamification
           WHERE study_streak > 0 AND ($1::uuid IS NULL OR user_id > $1)
           ORDER BY user_id LIMIT $2""",
        after,
        limit,
    )


async def ranked_scores(
    db: Executor, metric: str, scope: str, period: str, limit: int
) -> list[asyncpg.Record]:
    """The top of a period straight from PostgreSQL (Redis unavailable or being rebuilt)."""
    if metric == "streak":
        return await db.fetch(
            """SELECT user_id, study_streak AS score FROM user_gamification
               WHERE study_streak > 0 ORDER BY study_streak DESC, user_id DESC LIMIT $1""",
            limit,
        )
    return await db.fetch(
        """SELECT user_id, score FROM leaderboard_scores
           WHERE metric = $1 AND scope = $2 AND period = $3 AND score > 0
           ORDER BY score DESC, user_id DESC LIMIT $4""",
        metric,
        scope,
        period,
        limit,
    )


async def rank_of(
    db: Executor, metric: str, scope: str, period: str, user_id: uuid.UUID
) -> tuple[int, int] | None:
    """(0-based rank, score) of a user in a period from PostgreSQL; None if not ranked."""
    if metric == "streak":
        row = await db.fetchrow(
            """SELECT g.study_streak AS score,
                      (SELECT COUNT(*) FROM user_gamification o WHERE o.study_streak > 0 AND
                        (o.study_streak > g.study_streak OR
                         (o.study_streak = g.study_streak AND o.user_id > g.user_id))) AS above
               FROM user_gamification g WHERE g.user_id = $1 AND g.study_streak > 0""",
            user_id,
        )
    else:
        row = await db.fetchrow(
            """SELECT s.score, (SELECT COUNT(*) FROM leaderboard_scores o
                                WHERE o.metric = s.metric AND o.scope = s.scope
                                  AND o.period = s.period AND o.score > 0
                                  AND (o.score > s.score OR
                                       (o.score = s.score AND o.user_id > s.user_id))) AS above
               FROM leaderboard_scores s
               WHERE s.metric = $1 AND s.scope = $2 AND s.period = $3 AND s.user_id = $4
                 AND s.score > 0""",
            metric,
            scope,
            period,
            user_id,
        )
    if row is None:
        return None
    return int(row["above"]), int(row["score"])


async def scores_of(
    db: Executor, metric: str, scope: str, period: str, users: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if metric == "streak":
        rows = await db.fetch(
            """SELECT user_id, study_streak AS score FROM user_gamification
               WHERE user_id = ANY($1::uuid[]) AND study_streak > 0""",
            list(users),
        )
    else:
        rows = await db.fetch(
            """SELECT user_id, score FROM leaderboard_scores WHERE metric = $1 AND scope = $2
               AND period = $3 AND user_id = ANY($4::uuid[]) AND score > 0""",
            metric,
            scope,
            period,
            list(users),
        )
    return {r["user_id"]: int(r["score"]) for r in rows}


async def user_cards(db: Executor, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await db.fetch(
        """SELECT id, username, first_name, last_name, avatar_url FROM users
           WHERE id = ANY($1::uuid[])""",
        list(ids),
    )
    return {r["id"]: r for r in rows}


async def pod_member_ids(db: Executor, pod_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        """SELECT user_id FROM pod_memberships WHERE pod_id = $1 AND status = 'active'
           ORDER BY user_id LIMIT $2""",
        pod_id,
        limit,
    )
    return [r["user_id"] for r in rows]


async def mutual_follows(db: Executor, user_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        """SELECT a.followee_id FROM user_follows a
           JOIN user_follows b ON b.follower_id = a.followee_id AND b.followee_id = a.follower_id
           WHERE a.follower_id = $1 ORDER BY a.followee_id LIMIT $2""",
        user_id,
        limit,
    )
    return [r["followee_id"] for r in rows]


# ------------------------------------------------------------------------------ achievements


async def active_achievements(db: Executor) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT * FROM achievements WHERE is_active IS NOT FALSE
           ORDER BY points, name, id"""
    )


async def achievement(db: Executor, achievement_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM achievements WHERE id = $1 AND is_active IS NOT FALSE", achievement_id
    )


async def earned(db: Executor, user_id: uuid.UUID) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM user_achievements WHERE user_id = $1", user_id)
    return {r["achievement_id"]: r for r in rows}


async def unlock(
    conn: Conn, user_id: uuid.UUID, achievement_id: uuid.UUID, progress: dict[str, Any]
) -> asyncpg.Record | None:
    """Record an unlock; None if the user had it already (a concurrent evaluation won)."""
    row = await conn.fetchrow(
        """INSERT INTO user_achievements (user_id, achievement_id, progress)
           VALUES ($1, $2, $3) ON CONFLICT (user_id, achievement_id) DO NOTHING
           RETURNING *""",
        user_id,
        achievement_id,
        progress,
    )
    if row is not None:
        await conn.execute(
            """UPDATE user_gamification SET badges_earned = badges_earned + 1, updated_at = NOW()
               WHERE user_id = $1""",
            user_id,
        )
    return row


async def mark_claimed(
    conn: Conn, user_id: uuid.UUID, achievement_id: uuid.UUID
) -> asyncpg.Record | None:
    """Claim an unlocked achievement; None if not unlocked or claimed already."""
    return await conn.fetchrow(
        """UPDATE user_achievements SET claimed_at = NOW()
           WHERE user_id = $1 AND achievement_id = $2 AND claimed_at IS NULL RETURNING *""",
        user_id,
        achievement_id,
    )


async def event_count(db: Executor, user_id: uuid.UUID, kind: str) -> int:
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM analytics_events WHERE user_id = $1 AND event = $2",
            user_id,
            kind,
        )
    )


async def distinct_sessions(db: Executor, user_id: uuid.UUID, min_minutes: float) -> int:
    """Sessions the user attended, counting those with a stretch of `min_minutes` or more."""
    return int(
        await db.fetchval(
            """SELECT COUNT(DISTINCT session_id) FROM analytics_events
               WHERE user_id = $1 AND event = 'session_left' AND COALESCE(value, 0) >= $2""",
            user_id,
            min_minutes,
        )
    )


async def event_value_sum(db: Executor, user_id: uuid.UUID, kind: str) -> float:
    return float(
        await db.fetchval(
            """SELECT COALESCE(SUM(value), 0) FROM analytics_events
               WHERE user_id = $1 AND event = $2""",
            user_id,
            kind,
        )
    )


async def helpful_resources(
    db: Executor, user_id: uuid.UUID, min_average: float, min_ratings: int
) -> int:
    return int(
        await db.fetchval(
            """SELECT COUNT(*) FROM resources WHERE owner_id = $1
               AND rating_count >= $2 AND rating_average >= $3""",
            user_id,
            min_ratings,
            min_average,
        )
    )


async def resource_owner(db: Executor, resource_id: uuid.UUID) -> uuid.UUID | None:
    owner: uuid.UUID | None = await db.fetchval(
        "SELECT owner_id FROM resources WHERE id = $1", resource_id
    )
    return owner


async def global_rank(db: Executor, total_points: int, user_id: uuid.UUID) -> int:
    """1-based all-time points rank (ties: as the leaderboard orders them)."""
    above = await db.fetchval(
        """SELECT COUNT(*) FROM leaderboard_scores WHERE metric = 'points' AND scope = 'global'
           AND period = 'all' AND score > 0
           AND (score > $1 OR (score = $1 AND user_id > $2))""",
        total_points,
        user_id,
    )
    return int(above) + 1


# ------------------------------------------------------------------------------ challenges

CHALLENGE_COLUMNS = """c.id, c.title, c.description, c.challenge_type, c.category, c.criteria,
    c.reward_points, c.reward_badge, c.start_date, c.end_date, c.max_participants,
    c.current_participants, c.is_global, c.pod_id, c.status, c.created_at, c.created_by"""


async def insert_challenge(conn: Conn, values: dict[str, Any]) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO challenges (title, description, challenge_type, category, criteria,
               reward_points, reward_badge, start_date, end_date, max_participants, is_global,
               pod_id, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id""",
        values["title"],
        values["description"],
        values["challenge_type"],
        values["category"],
        values["criteria"],
        values["reward_points"],
        values["reward_badge"],
        values["start_date"],
        values["end_date"],
        values["max_participants"],
        values["is_global"],
        values["pod_id"],
        values["created_by"],
    )
    if row is None:  # pragma: no cover (INSERT ... RETURNING always returns)
        raise RuntimeError("challenge not stored")
    return row


async def challenge_for(
    db: Executor, challenge_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """A challenge with the caller's participation (p_*) and pod membership status."""
    return await db.fetchrow(
        f"""SELECT {CHALLENGE_COLUMNS}, p.status AS p_status, p.progress_value AS p_progress,
                   p.rank AS p_rank, p.points_earned AS p_points, p.completion_date AS p_completed,
                   p.joined_at AS p_joined,
                   (SELECT m.status FROM pod_memberships m
                    WHERE m.pod_id = c.pod_id AND m.user_id = $2) AS member_status
            FROM challenges c
            LEFT JOIN challenge_participants p ON p.challenge_id = c.id AND p.user_id = $2
            WHERE c.id = $1 {"FOR UPDATE OF c" if lock else ""}""",  # noqa: S608 (constants; values are parameters)
        challenge_id,
        user_id,
    )


async def challenges_for(
    db: Executor, user_id: uuid.UUID, *, pod_id: uuid.UUID | None, ended: bool, joined: bool,
    limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    """Challenges the user may see (global, and those of pods they belong to)."""
    return await db.fetch(
        f"""SELECT {CHALLENGE_COLUMNS}, p.status AS p_status, p.progress_value AS p_progress,
                   p.rank AS p_rank, p.points_earned AS p_points, p.completion_date AS p_completed,
                   p.joined_at AS p_joined, NULL AS member_status
            FROM challenges c
            LEFT JOIN challenge_participants p ON p.challenge_id = c.id AND p.user_id = $1
            WHERE (c.pod_id IS NULL OR EXISTS (SELECT 1 FROM pod_memberships m
                    WHERE m.pod_id = c.pod_id AND m.user_id = $1 AND m.status = 'active'))
              AND ($2::uuid IS NULL OR c.pod_id = $2)
              AND (CASE WHEN $3 THEN c.end_date <= NOW() ELSE c.end_date > NOW() END)
              AND (NOT $4 OR p.status IN ('active', 'completed'))
            ORDER BY c.end_date, c.id LIMIT $5""",  # noqa: S608 (constants; values are parameters)
        user_id,
        pod_id,
        ended,
        joined,
        limit,
    )


async def join_challenge(conn: Conn, challenge_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Join (or rejoin after leaving); False when already taking part."""
    row = await conn.fetchval(
        """INSERT INTO challenge_participants (challenge_id, user_id, status)
           VALUES ($1, $2, 'active')
           ON CONFLICT (challenge_id, user_id) DO UPDATE SET status = 'active', joined_at = NOW()
               WHERE challenge_participants.status = 'withdrawn'
           RETURNING id""",
        challenge_id,
        user_id,
    )
    if row is None:
        return False
    await conn.execute(
        "UPDATE challenges SET current_participants = current_participants + 1 WHERE id = $1",
        challenge_id,
    )
    return True


async def leave_challenge(conn: Conn, challenge_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        """UPDATE challenge_participants SET status = 'withdrawn'
           WHERE challenge_id = $1 AND user_id = $2 AND status = 'active' RETURNING id""",
        challenge_id,
        user_id,
    )
    if row is None:
        return False
    await conn.execute(
        """UPDATE challenges SET current_participants = GREATEST(current_participants - 1, 0)
           WHERE id = $1""",
        challenge_id,
    )
    return True


async def running_participations(
    conn: Conn, user_id: uuid.UUID, at: dt.datetime
) -> list[asyncpg.Record]:
    """The user's active participations in challenges running at `at` (joined before it)."""
    return await conn.fetch(
        """SELECT c.id, c.title, c.criteria, c.reward_points, c.pod_id, p.progress_value
           FROM challenge_participants p JOIN challenges c ON c.id = p.challenge_id
           WHERE p.user_id = $1 AND p.status = 'active' AND c.status = 'active'
             AND c.start_date <= $2 AND c.end_date > $2 AND p.joined_at <= $2
           ORDER BY c.id FOR UPDATE OF p""",
        user_id,
        at,
    )


async def set_progress(
    conn: Conn, challenge_id: uuid.UUID, user_id: uuid.UUID, value: int, target: int
) -> None:
    await conn.execute(
        """UPDATE challenge_participants SET progress_value = $3,
                  progress = jsonb_build_object('value', $3::int, 'target', $4::int)
           WHERE challenge_id = $1 AND user_id = $2""",
        challenge_id,
        user_id,
        value,
        target,
    )


async def complete_challenge(
    conn: Conn, challenge_id: uuid.UUID, user_id: uuid.UUID, points: int
) -> int:
    """Mark a participation completed; its rank (1 for the first to complete). The challenge
    row is locked so two completions get distinct ranks."""
    await conn.execute("SELECT 1 FROM challenges WHERE id = $1 FOR UPDATE", challenge_id)
    rank = await conn.fetchval(
        """SELECT COUNT(*) + 1 FROM challenge_participants
           WHERE challenge_id = $1 AND status = 'completed'""",
        challenge_id,
    )
    await conn.execute(
        """UPDATE challenge_participants SET status = 'completed', completion_date = NOW(),
                  rank = $3, points_earned = $4
           WHERE challenge_id = $1 AND user_id = $2""",
        challenge_id,
        user_id,
        rank,
        points,
    )
    await conn.execute(
        """UPDATE user_gamification SET challenges_completed = challenges_completed + 1
           WHERE user_id = $1""",
        user_id,
    )
    return int(rank)


async def challenge_standings(
    db: Executor, challenge_id: uuid.UUID, limit: int
) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT p.user_id, u.username, p.status, p.progress_value, p.rank, p.completion_date
           FROM challenge_participants p JOIN users u ON u.id = p.user_id
           WHERE p.challenge_id = $1 AND p.status IN ('active', 'completed')
           ORDER BY p.rank NULLS LAST, p.progress_value DESC, p.joined_at, p.user_id
           LIMIT $2""",
        challenge_id,
        limit,
    )


async def end_challenges(conn: Conn) -> int:
    """Close challenges whose end passed: unfinished participations fail."""
    ended = await conn.fetch(
        """UPDATE challenges SET status = 'ended' WHERE status = 'active' AND end_date <= NOW()
           RETURNING id"""
    )
    if ended:
        await conn.execute(
            """UPDATE challenge_participants SET status = 'failed'
               WHERE challenge_id = ANY($1::uuid[]) AND status = 'active'""",
            [r["id"] for r in ended],
        )
    return len(ended)


# ------------------------------------------------------------------------------ follows


async def user_exists(db: Executor, user_id: uuid.UUID) -> bool:
    found = await db.fetchval(
        "SELECT 1 FROM users WHERE id = $1 AND account_status <> 'deleted'", user_id
    )
    return found is not None


async def follow(conn: Conn, follower: uuid.UUID, followee: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO user_follows (follower_id, followee_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING""",
        follower,
        followee,
    )


async def unfollow(conn: Conn, follower: uuid.UUID, followee: uuid.UUID) -> None:
    await conn.execute(
        "DELETE FROM user_follows WHERE follower_id = $1 AND followee_id = $2", follower, followee
    )


async def follows_each_other(db: Executor, a: uuid.UUID, b: uuid.UUID) -> tuple[bool, bool]:
    row = await db.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM user_follows WHERE follower_id = $1 AND followee_id = $2)
                  AS a_b,
                  EXISTS (SELECT 1 FROM user_follows WHERE follower_id = $2 AND followee_id = $1)
                  AS b_a""",
        a,
        b,
    )
    if row is None:  # pragma: no cover
        return False, False
    return bool(row["a_b"]), bool(row["b_a"])


async def follow_page(
    db: Executor,
    user_id: uuid.UUID,
    *,
    followers: bool,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Who follows `user_id` (followers) or whom they follow, newest first (keyset)."""
    mine, other = ("followee_id", "follower_id") if followers else ("follower_id", "followee_id")
    return await db.fetch(
        f"""SELECT f.created_at, u.id, u.username, u.first_name, u.last_name, u.avatar_url
            FROM user_follows f JOIN users u ON u.id = f.{other}
            WHERE f.{mine} = $1 AND u.account_status <> 'deleted'
              AND ($2::timestamptz IS NULL OR (f.created_at, f.{other}) < ($2, $3))
            ORDER BY f.created_at DESC, f.{other} DESC LIMIT $4""",  # noqa: S608 (column names are constants)
        user_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


# ------------------------------------------------------------------------------ leagues


async def league_of(db: Executor, week: str, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT tier, league FROM league_members WHERE week = $1 AND user_id = $2", week, user_id
    )


async def enter_league(conn: Conn, week: str, user_id: uuid.UUID, tier: int, size: int) -> None:
    """Put the user in the week's last league of their tier, or a new one when it is full.
    An advisory lock per (week, tier) makes concurrent entries count the same league."""
    if await league_of(conn, week, user_id) is not None:
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"league:{week}:{tier}")
    last = await conn.fetchrow(
        """SELECT league, COUNT(*) AS n FROM league_members WHERE week = $1 AND tier = $2
           GROUP BY league ORDER BY league DESC LIMIT 1""",
        week,
        tier,
    )
    league = 0 if last is None else int(last["league"]) + (1 if last["n"] >= size else 0)
    await conn.execute(
        """INSERT INTO league_members (week, tier, league, user_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""",
        week,
        tier,
        league,
        user_id,
    )


async def league_standings(db: Executor, week: str, tier: int, league: int) -> list[asyncpg.Record]:
    """A league's members with their points of the week, best first (the leaderboard order)."""
    return await db.fetch(
        """SELECT m.user_id, u.username, COALESCE(s.score, 0) AS points
           FROM league_members m JOIN users u ON u.id = m.user_id
           LEFT JOIN leaderboard_scores s ON s.metric = 'points' AND s.scope = 'global'
                AND s.period = m.week AND s.user_id = m.user_id
           WHERE m.week = $1 AND m.tier = $2 AND m.league = $3
           ORDER BY COALESCE(s.score, 0) DESC, m.user_id DESC""",
        week,
        tier,
        league,
    )


async def open_weeks(db: Executor, current: str) -> list[str]:
    rows = await db.fetch(
        """SELECT DISTINCT week FROM league_members m WHERE week < $1
           AND NOT EXISTS (SELECT 1 FROM league_weeks_closed c WHERE c.week = m.week)
           ORDER BY week""",
        current,
    )
    return [r["week"] for r in rows]


async def close_week(conn: Conn, week: str) -> bool:
    row = await conn.fetchval(
        "INSERT INTO league_weeks_closed (week) VALUES ($1) ON CONFLICT DO NOTHING RETURNING week",
        week,
    )
    return row is not None


async def leagues_of_week(conn: Conn, week: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT DISTINCT tier, league FROM league_members WHERE week = $1 ORDER BY tier, league",
        week,
    )


async def set_tiers(conn: Conn, tiers: dict[uuid.UUID, int]) -> None:
    if not tiers:
        return
    await conn.execute(
        """INSERT INTO user_gamification (user_id, league_tier)
           SELECT t.u, t.tier FROM unnest($1::uuid[], $2::int[]) AS t(u, tier)
           ON CONFLICT (user_id) DO UPDATE SET league_tier = EXCLUDED.league_tier""",
        list(tiers),
        list(tiers.values()),
    )


async def leave_later_leagues(
    conn: Conn, week: str, users: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    """Take `users` out of the leagues of weeks after `week`; (week, user_id) of each."""
    if not users:
        return []
    return await conn.fetch(
        """DELETE FROM league_members WHERE week > $1 AND user_id = ANY($2::uuid[])
           RETURNING week, user_id""",
        week,
        list(users),
    )
