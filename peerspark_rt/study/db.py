"""SQL for study tools: decks, cards, each user's schedules and reviews, settings, goals and
live reviews.

Who may see a deck is decided in one place, `deck_visible()`: its owner, and the active members
of the pod it is shared with (the same membership test the vault's `resources.db.visible` uses
for pod shares). Whether a card's source resource may be named to a reader is the vault's own
rule, `resources.db.visible`, reused here so a citation never leaks a resource.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..infra import sql as sql_builder
from ..infra.dbtypes import Conn, Executor
from ..resources import db as resources_db


def deck_visible(d: str = "d", viewer: str = "$1") -> str:
    """SQL true when the viewer may see (and study) deck `d`."""
    return f"""({d}.owner_id = {viewer}
        OR ({d}.pod_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM pod_memberships dm
            WHERE dm.pod_id = {d}.pod_id AND dm.user_id = {viewer} AND dm.status = 'active')))"""  # noqa: S608 (composed of constants; values are parameters)


DECK_COLUMNS = """d.id, d.owner_id, d.pod_id, d.title, d.description, d.exam_date,
    d.source_resource_id, d.created_at, d.updated_at,
    (SELECT count(*) FROM study_cards c WHERE c.deck_id = d.id AND c.status = 'kept')
        AS card_count,
    (SELECT count(*) FROM study_cards c WHERE c.deck_id = d.id AND c.status = 'draft')
        AS draft_count"""

CARD_COLUMNS = f"""c.id, c.deck_id, c.front, c.back, c.tags, c.status, c.upload_id,
    c.source_resource_id, c.source_session_id, c.created_by, c.created_at, c.updated_at,
    (SELECT sr.title FROM resources sr
      WHERE sr.id = c.source_resource_id AND {resources_db.visible("sr", "$1")})
        AS source_title,
    up.storage_key AS upload_key, up.backend AS upload_backend, up.original_name AS upload_name,
    up.content_type AS upload_type, up.size_bytes AS upload_size"""  # noqa: S608 (composed of constants; values are parameters)
CARD_JOIN = "LEFT JOIN uploads up ON up.id = c.upload_id"

DECK_INSERT = frozenset(
    {"id", "owner_id", "pod_id", "title", "description", "exam_date", "source_resource_id"}
)
DECK_EDITABLE = frozenset({"title", "description", "exam_date", "pod_id"})
CARD_INSERT = frozenset(
    {
        "id", "deck_id", "front", "back", "tags", "status", "upload_id", "source_resource_id",
        "source_session_id", "created_by", "created_at", "kept_at",
    }
)  # fmt: skip
CARD_EDITABLE = frozenset({"front", "back", "tags", "status", "upload_id", "kept_at"})


# --- decks -----------------------------------------------------------------------------------


async def insert_deck(conn: Conn, values: dict[str, Any]) -> uuid.UUID:
    sql, args = sql_builder.insert("study_decks", values, DECK_INSERT, suffix="RETURNING id")
    deck_id: uuid.UUID = await conn.fetchval(sql, *args)
    return deck_id


async def get_deck(db: Executor, viewer: uuid.UUID, deck_id: uuid.UUID) -> asyncpg.Record | None:
    """The deck if the viewer may see it."""
    return await db.fetchrow(
        f"SELECT {DECK_COLUMNS} FROM study_decks d WHERE d.id = $2 AND {deck_visible()}",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        deck_id,
    )


async def lock_deck(conn: Conn, deck_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, owner_id, pod_id FROM study_decks WHERE id = $1 FOR UPDATE", deck_id
    )


async def list_decks(db: Executor, viewer: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            f"""SELECT {DECK_COLUMNS} FROM study_decks d WHERE {deck_visible()}
                ORDER BY d.created_at DESC, d.id LIMIT 500""",  # noqa: S608 (composed of constants; values are parameters)
            viewer,
        )
    )


async def update_deck(conn: Conn, deck_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "study_decks",
        changes,
        DECK_EDITABLE,
        where="id = $1",
        where_args=[deck_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def delete_deck(conn: Conn, deck_id: uuid.UUID) -> list[uuid.UUID]:
    """Delete the deck (its cards go with it); the uploads its cards used, to delete too."""
    rows = await conn.fetch(
        "SELECT upload_id FROM study_cards WHERE deck_id = $1 AND upload_id IS NOT NULL", deck_id
    )
    await conn.execute("DELETE FROM study_decks WHERE id = $1", deck_id)
    return [r["upload_id"] for r in rows]


# --- cards -----------------------------------------------------------------------------------


async def insert_cards(conn: Conn, rows: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert cards in order (one transaction shares one NOW(): each gets its own instant, a
    microsecond apart, so listings keep the order they were given in)."""
    ids: list[uuid.UUID] = []
    start = dt.datetime.now(dt.UTC)
    for i, given in enumerate(rows):
        at = start + dt.timedelta(microseconds=i)
        values = {"created_at": at, **given}
        if values.get("status") == "kept":
            values["kept_at"] = at
        sql, args = sql_builder.insert("study_cards", values, CARD_INSERT, suffix="RETURNING id")
        ids.append(await conn.fetchval(sql, *args))
    return ids


async def get_card(db: Executor, viewer: uuid.UUID, card_id: uuid.UUID) -> asyncpg.Record | None:
    """The card (with its deck's owner, pod and exam date) if the viewer may see its deck."""
    return await db.fetchrow(
        f"""SELECT {CARD_COLUMNS}, d.owner_id, d.pod_id, d.exam_date
            FROM study_cards c JOIN study_decks d ON d.id = c.deck_id {CARD_JOIN}
            WHERE c.id = $2 AND {deck_visible()}""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        card_id,
    )


async def cards_of(
    db: Executor,
    viewer: uuid.UUID,
    deck_id: uuid.UUID,
    *,
    status: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            f"""SELECT {CARD_COLUMNS} FROM study_cards c {CARD_JOIN}
                WHERE c.deck_id = $2 AND ($3::text IS NULL OR c.status = $3)
                  AND ($4::timestamptz IS NULL OR (c.created_at, c.id) > ($4, $5))
                ORDER BY c.created_at, c.id LIMIT $6""",  # noqa: S608 (composed of constants; values are parameters)
            viewer,
            deck_id,
            status,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


async def all_cards(db: Executor, deck_id: uuid.UUID, status: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            """SELECT front, back, tags FROM study_cards WHERE deck_id = $1 AND status = $2
               ORDER BY created_at, id""",
            deck_id,
            status,
        )
    )


async def update_card(conn: Conn, card_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "study_cards",
        changes,
        CARD_EDITABLE,
        where="id = $1",
        where_args=[card_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def delete_card(conn: Conn, card_id: uuid.UUID) -> uuid.UUID | None:
    """Delete a card; the upload it used (to delete too), if any."""
    upload: uuid.UUID | None = await conn.fetchval(
        "DELETE FROM study_cards WHERE id = $1 RETURNING upload_id", card_id
    )
    return upload


async def keep_drafts(conn: Conn, deck_id: uuid.UUID, card_ids: Sequence[uuid.UUID] | None) -> int:
    result: str = await conn.execute(
        """UPDATE study_cards SET status = 'kept', kept_at = clock_timestamp(), updated_at = NOW()
           WHERE deck_id = $1 AND status = 'draft' AND ($2::uuid[] IS NULL OR id = ANY($2))""",
        deck_id,
        list(card_ids) if card_ids is not None else None,
    )
    return int(result.split()[-1])


# --- schedules and reviews -------------------------------------------------------------------


async def review_by_client_id(
    db: Executor, user_id: uuid.UUID, client_review_id: str
) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT card_id, client_review_id, rating, reviewed_at, state, due_after, stability,
                  difficulty
           FROM study_reviews WHERE user_id = $1 AND client_review_id = $2""",
        user_id,
        client_review_id,
    )


async def claim_review(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    card_id: uuid.UUID,
    client_review_id: str,
    rating: int,
    reviewed_at: dt.datetime,
    duration_ms: int | None,
    session_id: uuid.UUID | None,
) -> uuid.UUID | None:
    """Insert the review (its outcome is filled in by `finish_review`); None when this client
    review id was stored before (a retried sync)."""
    review_id: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO study_reviews (user_id, card_id, client_review_id, rating, reviewed_at,
                                      duration_ms, session_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (user_id, client_review_id) DO NOTHING RETURNING id""",
        user_id,
        card_id,
        client_review_id,
        rating,
        reviewed_at,
        duration_ms,
        session_id,
    )
    return review_id


async def finish_review(
    conn: Conn,
    review_id: uuid.UUID,
    *,
    state: str,
    due: dt.datetime,
    stability: float | None,
    difficulty: float | None,
) -> None:
    await conn.execute(
        """UPDATE study_reviews SET state = $2, due_after = $3, stability = $4, difficulty = $5
           WHERE id = $1""",
        review_id,
        state,
        due,
        stability,
        difficulty,
    )


async def lock_state(
    conn: Conn, user_id: uuid.UUID, card_id: uuid.UUID, deck_id: uuid.UUID, now: dt.datetime
) -> asyncpg.Record:
    """The user's schedule of the card, locked (created empty, as a new card, if none)."""
    await conn.execute(
        """INSERT INTO study_card_states (user_id, card_id, deck_id, due, created_at)
           VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING""",
        user_id,
        card_id,
        deck_id,
        now,
    )
    row = await conn.fetchrow(
        """SELECT fsrs, reps, lapses, last_review FROM study_card_states
           WHERE user_id = $1 AND card_id = $2 FOR UPDATE""",
        user_id,
        card_id,
    )
    if row is None:
        raise RuntimeError("the schedule row inserted above is missing")
    return row


async def save_state(
    conn: Conn,
    user_id: uuid.UUID,
    card_id: uuid.UUID,
    *,
    fsrs: dict[str, Any],
    due: dt.datetime,
    last_review: dt.datetime,
    lapsed: bool,
) -> None:
    await conn.execute(
        """UPDATE study_card_states
           SET fsrs = $3, due = $4, last_review = $5, reps = reps + 1,
               lapses = lapses + $6::int
           WHERE user_id = $1 AND card_id = $2""",
        user_id,
        card_id,
        fsrs,
        due,
        last_review,
        1 if lapsed else 0,
    )


async def study_context(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The user's zone and study settings (NULL settings: the defaults)."""
    return await db.fetchrow(
        """SELECT coalesce(u.timezone, 'UTC') AS timezone, st.desired_retention, st.new_per_day
           FROM users u LEFT JOIN study_settings st ON st.user_id = u.id WHERE u.id = $1""",
        user_id,
    )


async def visible_decks(
    db: Executor, user_id: uuid.UUID, deck_id: uuid.UUID | None
) -> list[asyncpg.Record]:
    """The decks the user studies (or just `deck_id`, if they may): id, title, exam date."""
    return list(
        await db.fetch(
            f"""SELECT d.id, d.title, d.exam_date FROM study_decks d
                WHERE {deck_visible()} AND ($2::uuid IS NULL OR d.id = $2)""",  # noqa: S608 (composed of constants; values are parameters)
            user_id,
            deck_id,
        )
    )


# Studied cards of the given decks due before $2, most overdue first: the inner query walks
# idx_study_card_states_user_due in order and stops at the limit, whatever the count due.
IMAGE_COLUMNS = """up.storage_key AS upload_key, up.backend AS upload_backend,
    up.original_name AS upload_name, up.content_type AS upload_type, up.size_bytes AS upload_size"""

DUE_REVIEWS = f"""SELECT s.card_id AS id, s.deck_id, c.front, c.back, c.tags, s.due, s.fsrs,
           {IMAGE_COLUMNS}
    FROM (SELECT card_id, deck_id, due, fsrs FROM study_card_states
          WHERE user_id = $1 AND due < $2 AND deck_id = ANY($3::uuid[])
          ORDER BY due, card_id LIMIT $4) s
    JOIN study_cards c ON c.id = s.card_id
    LEFT JOIN uploads up ON up.id = c.upload_id
    ORDER BY s.due, s.card_id"""  # noqa: S608 (composed of constants; values are parameters)

# How many: an index-only scan (the index carries deck_id). Schedules exist only for kept
# cards (a kept card never becomes a draft again), so the cards themselves are not read.
DUE_COUNT = """SELECT count(*) FROM study_card_states
    WHERE user_id = $1 AND due < $2 AND deck_id = ANY($3::uuid[])"""

# Per deck, its first kept cards the user never reviewed, from the user's mark on (an ordered
# range scan of idx_study_cards_new that only steps over cards reviewed since the mark moved),
# with the mark as it is, so the caller can move it.
NEW_CARDS = f"""SELECT c.id, c.deck_id, c.front, c.back, c.tags, c.kept_at,
           m.kept_at AS mark_at, m.card_id AS mark_card, {IMAGE_COLUMNS}
    FROM unnest($2::uuid[]) AS k(deck_id)
    LEFT JOIN study_new_marks m ON m.user_id = $1 AND m.deck_id = k.deck_id
    CROSS JOIN LATERAL (
        SELECT c.id, c.deck_id, c.front, c.back, c.tags, c.kept_at, c.upload_id FROM study_cards c
        WHERE c.deck_id = k.deck_id AND c.status = 'kept'
          AND (c.kept_at, c.id) >= (coalesce(m.kept_at, '-infinity'),
                                    coalesce(m.card_id, '00000000-0000-0000-0000-000000000000'))
          AND NOT EXISTS (SELECT 1 FROM study_card_states s
                          WHERE s.user_id = $1 AND s.card_id = c.id)
        ORDER BY c.kept_at, c.id LIMIT $3) c
    LEFT JOIN uploads up ON up.id = c.upload_id
    ORDER BY c.kept_at, c.id LIMIT $3"""  # noqa: S608 (composed of constants; values are parameters)


async def due_reviews(
    db: Executor,
    user_id: uuid.UUID,
    until: dt.datetime,
    decks: Sequence[uuid.UUID],
    limit: int,
) -> list[asyncpg.Record]:
    return list(await db.fetch(DUE_REVIEWS, user_id, until, list(decks), limit))


async def due_count(
    db: Executor, user_id: uuid.UUID, until: dt.datetime, decks: Sequence[uuid.UUID]
) -> int:
    count: int = await db.fetchval(DUE_COUNT, user_id, until, list(decks))
    return count


async def started_since(db: Executor, user_id: uuid.UUID, since: dt.datetime) -> int:
    """New cards the user began since `since` (their first review)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM study_card_states WHERE user_id = $1 AND created_at >= $2",
        user_id,
        since,
    )
    return count


async def new_cards(
    db: Executor, user_id: uuid.UUID, decks: Sequence[uuid.UUID], limit: int
) -> list[asyncpg.Record]:
    """Kept cards of `decks` the user never reviewed, in the order they were kept; the marks
    of the decks where one was found move up to it (every card before it has a schedule)."""
    if not decks or limit <= 0:
        return []
    rows = list(await db.fetch(NEW_CARDS, user_id, list(decks), limit))
    first: dict[uuid.UUID, asyncpg.Record] = {}
    for r in rows:
        first.setdefault(r["deck_id"], r)
    moved = [
        (r["deck_id"], r["kept_at"], r["id"])
        for r in first.values()
        if (r["mark_at"], r["mark_card"]) != (r["kept_at"], r["id"])
    ]
    if moved:
        await db.execute(
            """INSERT INTO study_new_marks (user_id, deck_id, kept_at, card_id)
               SELECT $1, m.deck_id, m.kept_at, m.card_id
               FROM unnest($2::uuid[], $3::timestamptz[], $4::uuid[]) AS m(deck_id, kept_at,
                                                                          card_id)
               ON CONFLICT (user_id, deck_id) DO UPDATE
               SET kept_at = EXCLUDED.kept_at, card_id = EXCLUDED.card_id
               WHERE (study_new_marks.kept_at, study_new_marks.card_id)
                     < (EXCLUDED.kept_at, EXCLUDED.card_id)""",
            user_id,
            [m[0] for m in moved],
            [m[1] for m in moved],
            [m[2] for m in moved],
        )
    return rows


# --- settings and goals ----------------------------------------------------------------------


async def settings_of(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT s.desired_retention, s.new_per_day FROM study_settings s WHERE s.user_id = $1""",
        user_id,
    )


async def user_zone(db: Executor, user_id: uuid.UUID) -> str:
    zone: str | None = await db.fetchval("SELECT timezone FROM users WHERE id = $1", user_id)
    return zone or "UTC"


async def save_settings(
    db: Executor, user_id: uuid.UUID, retention: float, new_per_day: int
) -> None:
    await db.execute(
        """INSERT INTO study_settings (user_id, desired_retention, new_per_day)
           VALUES ($1, $2, $3)
           ON CONFLICT (user_id) DO UPDATE
           SET desired_retention = $2, new_per_day = $3, updated_at = NOW()""",
        user_id,
        retention,
        new_per_day,
    )


async def goals_of(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT minutes_per_week, cards_per_week, sessions_per_week, reminders, reminded_week
           FROM study_goals WHERE user_id = $1""",
        user_id,
    )


async def save_goals(
    db: Executor, user_id: uuid.UUID, minutes: int, cards: int, sessions: int, reminders: bool
) -> None:
    await db.execute(
        """INSERT INTO study_goals (user_id, minutes_per_week, cards_per_week, sessions_per_week,
                                    reminders)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (user_id) DO UPDATE
           SET minutes_per_week = $2, cards_per_week = $3, sessions_per_week = $4,
               reminders = $5, updated_at = NOW()""",
        user_id,
        minutes,
        cards,
        sessions,
        reminders,
    )


async def week_progress(
    db: Executor, user_id: uuid.UUID, monday: dt.date, sunday: dt.date
) -> asyncpg.Record:
    """The week's figures from the analytics events (local days, fixed when written): time
    spent in sessions and focus blocks (spans), review time, reviews, sessions attended."""
    row = await db.fetchrow(
        """SELECT
             (SELECT coalesce(sum(sp.seconds), 0) FROM analytics_spans sp
               WHERE sp.user_id = $1 AND sp.local_date BETWEEN $2 AND $3) AS presence_seconds,
             (SELECT coalesce(sum((e.meta_duration)), 0) FROM (
                 SELECT (ae.properties->>'durationMs')::bigint AS meta_duration
                 FROM analytics_events ae
                 WHERE ae.user_id = $1 AND ae.local_date BETWEEN $2 AND $3
                   AND ae.event = 'card_reviewed') e) AS review_ms,
             (SELECT count(*) FROM analytics_events ae
               WHERE ae.user_id = $1 AND ae.local_date BETWEEN $2 AND $3
                 AND ae.event = 'card_reviewed') AS reviews,
             (SELECT count(DISTINCT ae.session_id) FROM analytics_events ae
               WHERE ae.user_id = $1 AND ae.local_date BETWEEN $2 AND $3
                 AND ae.event = 'session_joined') AS sessions""",
        user_id,
        monday,
        sunday,
    )
    if row is None:
        raise RuntimeError("an aggregate query returned no row")
    return row


async def goal_reminder_candidates(
    db: Executor, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Users with reminders on and a goal set (after `after`, by id), with their zone and the
    week last reminded."""
    return list(
        await db.fetch(
            """SELECT g.user_id, coalesce(u.timezone, 'UTC') AS timezone, g.reminded_week
               FROM study_goals g JOIN users u ON u.id = g.user_id
               WHERE g.reminders AND u.account_status = 'active'
                 AND ($1::uuid IS NULL OR g.user_id > $1)
                 AND (g.minutes_per_week > 0 OR g.cards_per_week > 0 OR g.sessions_per_week > 0)
               ORDER BY g.user_id LIMIT $2""",
            after,
            limit,
        )
    )


async def mark_reminded(db: Executor, user_id: uuid.UUID, monday: dt.date) -> bool:
    """Claim this week's reminder (False: already sent, by this or another worker)."""
    result: str = await db.execute(
        """UPDATE study_goals SET reminded_week = $2
           WHERE user_id = $1 AND (reminded_week IS NULL OR reminded_week < $2)""",
        user_id,
        monday,
    )
    return result.endswith(" 1")


# --- live reviews ----------------------------------------------------------------------------


async def lock_live(conn: Conn, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT session_id, deck_id, card_ids, round, status, started_at FROM study_live_reviews
           WHERE session_id = $1 FOR UPDATE""",
        session_id,
    )


async def get_live(db: Executor, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT session_id, deck_id, card_ids, round, status FROM study_live_reviews
           WHERE session_id = $1""",
        session_id,
    )


async def start_live(
    conn: Conn, session_id: uuid.UUID, deck_id: uuid.UUID, by: uuid.UUID, cards: list[uuid.UUID]
) -> None:
    await conn.execute("DELETE FROM study_live_reviews WHERE session_id = $1", session_id)
    await conn.execute(
        """INSERT INTO study_live_reviews (session_id, deck_id, started_by, card_ids, round)
           VALUES ($1, $2, $3, $4, 1)""",
        session_id,
        deck_id,
        by,
        cards,
    )


async def set_live(conn: Conn, session_id: uuid.UUID, round_: int, status: str) -> None:
    await conn.execute(
        """UPDATE study_live_reviews SET round = $2, status = $3, updated_at = NOW()
           WHERE session_id = $1""",
        session_id,
        round_,
        status,
    )


async def all_card_ids(db: Executor, deck_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    rows = await db.fetch(
        """SELECT id FROM study_cards WHERE deck_id = $1 AND status = 'kept'
           ORDER BY created_at, id LIMIT $2""",
        deck_id,
        limit,
    )
    return [r["id"] for r in rows]


async def live_card(db: Executor, card_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT c.id, c.deck_id, c.front, c.back, c.tags, {IMAGE_COLUMNS}
            FROM study_cards c LEFT JOIN uploads up ON up.id = c.upload_id
            WHERE c.id = $1""",  # noqa: S608 (composed of constants; values are parameters)
        card_id,
    )


async def answer_live(
    conn: Conn, session_id: uuid.UUID, round_: int, user_id: uuid.UUID, rating: int
) -> bool:
    """Record a member's answer to a round (False: they had answered it)."""
    result: str = await conn.execute(
        """INSERT INTO study_live_answers (session_id, round, user_id, rating)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        session_id,
        round_,
        user_id,
        rating,
    )
    return result.endswith(" 1")


async def tally(db: Executor, session_id: uuid.UUID, round_: int) -> dict[int, int]:
    rows = await db.fetch(
        """SELECT rating, count(*) AS n FROM study_live_answers
           WHERE session_id = $1 AND round = $2 GROUP BY rating""",
        session_id,
        round_,
    )
    return {int(r["rating"]): int(r["n"]) for r in rows}


async def readable_resource(
    db: Executor, viewer: uuid.UUID, resource_id: uuid.UUID
) -> asyncpg.Record | None:
    """A resource's text, if the viewer may read it (the vault's one rule)."""
    return await db.fetchrow(
        f"""SELECT r.id, r.title, r.description, r.content FROM resources r
            WHERE r.id = $2 AND {resources_db.visible("r", "$1")}""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        resource_id,
    )
