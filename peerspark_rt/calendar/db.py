"""SQL for calendar events, the study sessions a calendar shows, feed tokens and reminders."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..infra import sql as sql_builder
from ..infra.dbtypes import Conn, Executor

EVENT_COLUMNS = """id, user_id, title, description, event_type, start_time, end_time, timezone,
    location, is_all_day, is_recurring, recurrence_pattern, reminder_settings, related_pod_id,
    related_session_id, status, created_at, updated_at, span_start, span_end, ical_uid,
    reminder_due_at"""

SESSION_COLUMNS = """s.id, s.title, s.description, s.session_type, s.pod_id, s.organizer_id,
    s.start_time, s.end_time, s.timezone, s.meeting_url, s.status, s.is_recurring,
    s.recurrence_pattern, s.created_at, s.updated_at, s.span_end"""

# A pod's sessions are for its active members only (a ban or removal ends them). Format
# {user} with the user's column or parameter.
_POD_ACCESS = """(s.pod_id IS NULL OR EXISTS (
    SELECT 1 FROM pod_memberships pa
     WHERE pa.pod_id = s.pod_id AND pa.user_id = {user} AND pa.status = 'active'))"""

# The sessions a user's calendar shows: those they organize, take part in (unless they
# declined), and those of pods where they are an active member. Each branch uses an index.
_MY_SESSIONS = f"""
    SELECT mine.id FROM (
        SELECT id FROM study_sessions WHERE organizer_id = $1
        UNION
        SELECT session_id FROM session_participants WHERE user_id = $1 AND status <> 'declined'
        UNION
        SELECT s.id FROM pod_memberships m JOIN study_sessions s ON s.pod_id = m.pod_id
         WHERE m.user_id = $1 AND m.status = 'active'
    ) mine JOIN study_sessions s ON s.id = mine.id
    WHERE {_POD_ACCESS.format(user="$1")}
"""  # noqa: S608 (composed of constants; values are parameters)


# what the calendar writes to an event (the rest: ids, timestamps, what triggers keep)
WRITABLE_COLUMNS = frozenset(
    {
        "user_id", "title", "description", "event_type", "start_time", "end_time", "timezone",
        "location", "is_all_day", "is_recurring", "recurrence_pattern", "reminder_settings",
        "related_pod_id", "related_session_id", "status", "span_start", "span_end", "ical_uid",
        "reminder_due_at",
    }
)  # fmt: skip


async def insert_event(conn: Executor, values: dict[str, Any]) -> asyncpg.Record:
    sql, args = sql_builder.insert(
        "calendar_events", values, WRITABLE_COLUMNS, suffix=f"RETURNING {EVENT_COLUMNS}"
    )
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def update_event(
    conn: Executor, event_id: uuid.UUID, values: dict[str, Any]
) -> asyncpg.Record:
    sql, args = sql_builder.update(
        "calendar_events",
        values,
        WRITABLE_COLUMNS - {"user_id"},
        where="id = $1",
        where_args=[event_id],
        also="updated_at = NOW()",
        returning=EVENT_COLUMNS,
    )
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def get_event(
    conn: Executor, user_id: uuid.UUID, event_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """The event if `user_id` owns it (calendars are private: anyone else gets None)."""
    return await conn.fetchrow(
        f"SELECT {EVENT_COLUMNS} FROM calendar_events WHERE id = $1 AND user_id = $2"  # noqa: S608 (composed of constants; values are parameters)
        + (" FOR UPDATE" if lock else ""),
        event_id,
        user_id,
    )


async def upsert_imported_event(
    conn: Executor, values: dict[str, Any]
) -> tuple[asyncpg.Record, bool]:
    """Insert an imported event, or update the one imported before with the same UID (its
    user's). One statement, so two imports of the same file at once cannot both insert.
    Returns the row and whether it is new."""
    changes = sql_builder.excluded(list(values), WRITABLE_COLUMNS, keep={"user_id", "ical_uid"})
    sql, args = sql_builder.insert(
        "calendar_events",
        values,
        WRITABLE_COLUMNS,
        suffix=f"""ON CONFLICT (user_id, ical_uid) WHERE ical_uid IS NOT NULL
            DO UPDATE SET {changes}, updated_at = NOW()
            RETURNING {EVENT_COLUMNS}, (xmax = 0) AS inserted""",
    )
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row, bool(row["inserted"])


async def lock_user_events(conn: Conn, user_id: uuid.UUID) -> None:
    """Serialize the transactions that add events for one user (until the transaction ends)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('calendar_events:' || $1::uuid::text, 0))",
        user_id,
    )


async def count_events(conn: Executor, user_id: uuid.UUID, at_most: int) -> int:
    """How many events the user has, counting no further than `at_most`."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM (
                   SELECT 1 FROM calendar_events WHERE user_id = $1 LIMIT $2) mine""",
            user_id,
            at_most,
        )
    )


async def delete_event(conn: Executor, user_id: uuid.UUID, event_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM calendar_events WHERE id = $1 AND user_id = $2", event_id, user_id
    )
    return status.endswith(" 1")


async def events_between(
    conn: Executor,
    user_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
    event_types: list[str] | None,
    *,
    limit: int,
) -> list[asyncpg.Record]:
    """Events of the user whose series may have an occurrence in [start, end) (the first
    `limit` by start)."""
    return await conn.fetch(
        f"""SELECT {EVENT_COLUMNS} FROM calendar_events
             WHERE user_id = $1 AND span_start < $3
               AND (span_end IS NULL OR span_end >= $2)
               AND ($4::text[] IS NULL OR event_type = ANY($4::text[]))
             ORDER BY span_start, id
             LIMIT $5""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        start,
        end,
        event_types,
        limit,
    )


async def sessions_between(
    conn: Executor, user_id: uuid.UUID, start: dt.datetime, end: dt.datetime, *, limit: int
) -> list[asyncpg.Record]:
    """Study sessions the user's calendar shows that may fall in [start, end) (the first
    `limit` by start)."""
    return await conn.fetch(
        f"""SELECT {SESSION_COLUMNS},
                   CASE WHEN s.organizer_id = $1 THEN 'organizer'
                        WHEN p.user_id IS NOT NULL THEN 'participant'
                        ELSE 'pod_member' END AS my_role
              FROM study_sessions s
              JOIN ({_MY_SESSIONS}) mine ON mine.id = s.id
              LEFT JOIN session_participants p ON p.session_id = s.id AND p.user_id = $1
             WHERE COALESCE(s.status, 'scheduled') <> 'cancelled'
               AND s.start_time < $3
               AND (s.is_recurring OR s.end_time >= $2)
             ORDER BY s.start_time, s.id
             LIMIT $4""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        start,
        end,
        limit,
    )


async def session_visible(conn: Executor, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM ({_MY_SESSIONS}) mine WHERE mine.id = $2)",  # noqa: S608 (composed of constants; values are parameters)
            user_id,
            session_id,
        )
    )


async def feed_events(
    conn: Executor, user_id: uuid.UUID, since: dt.datetime, *, limit: int
) -> list[asyncpg.Record]:
    """The user's events still of interest after `since`, at most `limit`: series that never
    end first, then those that start latest."""
    return await conn.fetch(
        f"""SELECT {EVENT_COLUMNS} FROM calendar_events
             WHERE user_id = $1 AND (span_end IS NULL OR span_end >= $2)
             ORDER BY span_end IS NULL DESC, span_start DESC, id DESC
             LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        since,
        limit,
    )


async def feed_sessions(
    conn: Executor, user_id: uuid.UUID, since: dt.datetime, *, limit: int
) -> list[asyncpg.Record]:
    """The user's sessions still of interest after `since` (a series without a known end
    always is), at most `limit`: recurring ones first, then those that start latest."""
    return await conn.fetch(
        f"""SELECT {SESSION_COLUMNS}, 'x' AS my_role
              FROM study_sessions s JOIN ({_MY_SESSIONS}) mine ON mine.id = s.id
             WHERE COALESCE(s.span_end, CASE WHEN s.is_recurring THEN 'infinity'::timestamptz
                                            ELSE s.end_time END) >= $2
             ORDER BY s.is_recurring DESC, s.start_time DESC, s.id DESC
             LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        since,
        limit,
    )


# --------------------------------------------------------------------------- feed tokens


async def set_feed_token(conn: Executor, user_id: uuid.UUID, token_hash: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO calendar_feed_tokens (user_id, token_hash) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE
             SET token_hash = EXCLUDED.token_hash, created_at = NOW(), last_used_at = NULL
           RETURNING user_id, created_at, last_used_at""",
        user_id,
        token_hash,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def feed_token_info(conn: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT user_id, created_at, last_used_at FROM calendar_feed_tokens WHERE user_id = $1",
        user_id,
    )


async def delete_feed_token(conn: Executor, user_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM calendar_feed_tokens WHERE user_id = $1", user_id)
    return status.endswith(" 1")


async def feed_owner(conn: Executor, token_hash: str) -> asyncpg.Record | None:
    """The user a feed token belongs to (and note that the feed was fetched)."""
    return await conn.fetchrow(
        """UPDATE calendar_feed_tokens t SET last_used_at = NOW()
             FROM users u
            WHERE t.token_hash = $1 AND u.id = t.user_id AND u.account_status = 'active'
        RETURNING u.id, u.username, u.first_name, u.last_name, u.timezone""",
        token_hash,
    )


async def user_timezone(conn: Executor, user_id: uuid.UUID) -> str:
    tz = await conn.fetchval("SELECT timezone FROM users WHERE id = $1", user_id)
    return str(tz or "UTC")


# --------------------------------------------------------------------------- reminders


async def events_due(
    conn: Executor, now: dt.datetime, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """Events whose next reminder is due by `now`, in order of that time, keyset-paged after
    `after` (reminder_due_at, id). Through idx_calendar_events_reminder_due, so a scan reads
    only the events with something due."""
    return await conn.fetch(
        f"""SELECT {EVENT_COLUMNS} FROM calendar_events
             WHERE reminder_due_at <= $1
               AND ($2::timestamptz IS NULL OR (reminder_due_at, id) > ($2, $3::uuid))
             ORDER BY reminder_due_at, id
             LIMIT $4""",  # noqa: S608 (composed of constants; values are parameters)
        now,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def set_reminders_due(
    conn: Executor, changes: list[tuple[uuid.UUID, dt.datetime, dt.datetime | None]]
) -> None:
    """Move events' next reminders on: (event id, updated_at as read, next due). An event
    edited since it was read is left alone (the edit computed its own). updated_at stays: it is
    when the event's reminders were armed."""
    if not changes:
        return
    await conn.execute(
        """UPDATE calendar_events e SET reminder_due_at = c.due
             FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS c(id, seen, due)
            WHERE e.id = c.id AND e.updated_at = c.seen""",
        [c[0] for c in changes],
        [c[1] for c in changes],
        [c[2] for c in changes],
    )


async def existing_dedupe_keys(conn: Executor, keys: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT dedupe_key FROM jobs WHERE dedupe_key = ANY($1::text[])", keys)
    return {r["dedupe_key"] for r in rows}


_SESSION_ATTENDEES = f"""
    SELECT {SESSION_COLUMNS}, r.user_id, u.notification_settings
      FROM study_sessions s
      JOIN LATERAL (
            SELECT s.organizer_id AS user_id
            UNION
            SELECT p.user_id FROM session_participants p
             WHERE p.session_id = s.id AND p.status = 'accepted') r ON TRUE
      JOIN users u ON u.id = r.user_id AND u.account_status = 'active'
     WHERE COALESCE(s.status, 'scheduled') = 'scheduled'
       AND {_POD_ACCESS.format(user="r.user_id")}"""  # noqa: S608 (composed of constants; values are parameters)


async def one_off_sessions_for_reminders(
    conn: Executor,
    start: dt.datetime,
    end: dt.datetime,
    after: tuple[dt.datetime, uuid.UUID, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Sessions that do not repeat and start in (start, end], one row per person to remind
    (the organizer and accepted participants) with their notification settings, keyset-paged
    on (start_time, session id, user id)."""
    return await conn.fetch(
        f"""{_SESSION_ATTENDEES}
               AND NOT s.is_recurring AND s.start_time > $1 AND s.start_time <= $2
               AND ($3::timestamptz IS NULL
                    OR (s.start_time, s.id, r.user_id) > ($3, $4::uuid, $5::uuid))
             ORDER BY s.start_time, s.id, r.user_id
             LIMIT $6""",
        start,
        end,
        after[0] if after else None,
        after[1] if after else None,
        after[2] if after else None,
        limit,
    )


async def recurring_sessions_for_reminders(
    conn: Executor,
    before: dt.datetime,
    after: tuple[uuid.UUID, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Recurring sessions that started before `before`, one row per person to remind,
    keyset-paged on (session id, user id)."""
    return await conn.fetch(
        f"""{_SESSION_ATTENDEES}
               AND s.is_recurring AND s.start_time < $1
               AND ($2::uuid IS NULL OR (s.id, r.user_id) > ($2, $3::uuid))
             ORDER BY s.id, r.user_id
             LIMIT $4""",
        before,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def insert_delivery(
    conn: Conn,
    *,
    source: str,
    source_id: uuid.UUID,
    user_id: uuid.UUID,
    occurrence_start: dt.datetime,
    minutes_before: int,
    channel: str,
    due_at: dt.datetime,
    late: bool,
    fired_by: str,
) -> int | None:
    """Claim one reminder delivery; None when it was already delivered."""
    value = await conn.fetchval(
        """INSERT INTO reminder_deliveries
             (source, source_id, user_id, occurrence_start, minutes_before, channel, due_at,
              late, fired_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT DO NOTHING
           RETURNING id""",
        source,
        source_id,
        user_id,
        occurrence_start,
        minutes_before,
        channel,
        due_at,
        late,
        fired_by,
    )
    return int(value) if value is not None else None


async def link_delivery(conn: Conn, delivery_id: int, notification_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE reminder_deliveries SET notification_id = $2 WHERE id = $1",
        delivery_id,
        notification_id,
    )
