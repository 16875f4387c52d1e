"""SQL for study sessions, their participants and their live messages."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..analytics.db import EVENTS_WRITTEN, events_ctes
from ..infra import sql as sql_builder
from ..infra.dbtypes import Conn, Executor

SESSION_COLUMNS = """s.id, s.title, s.description, s.session_type, s.pod_id, s.organizer_id,
    s.start_time, s.end_time, s.timezone, s.meeting_url, s.meeting_id, s.max_participants,
    s.current_participants, s.status, s.is_recurring, s.recurrence_pattern, s.tags, s.resources,
    s.notes, s.recording_url,
    (SELECT q.last_seq FROM session_seqs q WHERE q.session_id = s.id) AS last_message_seq,
    s.started_at, s.ended_at, s.created_at, s.updated_at"""

EDITABLE_COLUMNS = frozenset(
    {
        "title",
        "description",
        "start_time",
        "end_time",
        "timezone",
        "meeting_url",
        "meeting_id",
        "meeting_password",
        "max_participants",
        "is_recurring",
        "recurrence_pattern",
        "span_end",
        "tags",
        "resources",
        "notes",
        "recording_url",
    }
)

# Who may see a session: its organizer and participants, members of its pod (pod sessions),
# and everyone for open group sessions. A pod session is for the pod's active members and the
# guests its organizer invited (role 'guest', never pod members): being banned from the pod or
# removed from it ends a member's access to its sessions too, whatever part they had in
# them. Format {viewer} with the viewer's parameter.
VISIBLE_TO = """(
    CASE WHEN s.pod_id IS NOT NULL THEN EXISTS (
            SELECT 1 FROM pod_memberships pm
            WHERE pm.pod_id = s.pod_id AND pm.user_id = {viewer} AND pm.status = 'active')
         OR EXISTS (SELECT 1 FROM session_participants sg
                    WHERE sg.session_id = s.id AND sg.user_id = {viewer} AND sg.role = 'guest'
                      AND sg.status <> 'declined')
         ELSE s.organizer_id = {viewer}
              OR s.session_type = 'group'
              OR EXISTS (SELECT 1 FROM session_participants sp
                         WHERE sp.session_id = s.id AND sp.user_id = {viewer})
    END
)"""


INSERT_COLUMNS = EDITABLE_COLUMNS | {
    "id", "session_type", "pod_id", "organizer_id", "status", "span_end", "current_participants"
}  # fmt: skip


async def insert_session(conn: Conn, values: dict[str, Any]) -> uuid.UUID:
    sql, args = sql_builder.insert("study_sessions", values, INSERT_COLUMNS, suffix="RETURNING id")
    session_id: uuid.UUID = await conn.fetchval(sql, *args)
    return session_id


async def get_for(db: Executor, session_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The session with the viewer's participation and pod role, if the viewer may see it."""
    return await db.fetchrow(
        f"""SELECT {SESSION_COLUMNS}, sp.status AS my_status, sp.role AS my_role,
                   sp.last_read_seq AS my_last_read_seq, pm.role AS my_pod_role
            FROM study_sessions s
            LEFT JOIN session_participants sp ON sp.session_id = s.id AND sp.user_id = $2
            LEFT JOIN pod_memberships pm
                   ON pm.pod_id = s.pod_id AND pm.user_id = $2 AND pm.status = 'active'
            WHERE s.id = $1 AND {VISIBLE_TO.format(viewer="$2")}""",  # noqa: S608 (composed of constants; values are parameters)
        session_id,
        user_id,
    )


async def rooms_in_pod(db: Executor, pod_id: uuid.UUID, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The sessions of `pod_id` whose live room `user_id` may be in (they take part in them)."""
    rows = await db.fetch(
        """SELECT s.id FROM study_sessions s
           JOIN session_participants sp ON sp.session_id = s.id AND sp.user_id = $2
           WHERE s.pod_id = $1""",
        pod_id,
        user_id,
    )
    return [r["id"] for r in rows]


async def lock(conn: Conn, session_id: uuid.UUID) -> asyncpg.Record | None:
    # NO KEY UPDATE: it serializes changes to the session, yet lets the chat store insert
    # messages meanwhile (their foreign key only takes a KEY SHARE lock on the session).
    return await conn.fetchrow(
        """SELECT id, organizer_id, session_type, pod_id, status, max_participants,
                  current_participants, start_time, end_time, started_at
           FROM study_sessions WHERE id = $1 FOR NO KEY UPDATE""",
        session_id,
    )


async def list_for(
    db: Executor,
    user_id: uuid.UUID,
    *,
    session_type: str | None,
    pod_id: uuid.UUID | None,
    status: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {SESSION_COLUMNS}, sp.status AS my_status, sp.role AS my_role,
                   sp.last_read_seq AS my_last_read_seq, NULL::text AS my_pod_role,
                   count(*) OVER () AS total
            FROM study_sessions s
            LEFT JOIN session_participants sp ON sp.session_id = s.id AND sp.user_id = $1
            WHERE {VISIBLE_TO.format(viewer="$1")}
              AND ($2::text IS NULL OR s.session_type = $2)
              AND ($3::uuid IS NULL OR s.pod_id = $3)
              AND ($4::text IS NULL OR s.status = $4)
              AND ($5::timestamptz IS NULL OR s.end_time >= $5)
              AND ($6::timestamptz IS NULL OR s.start_time <= $6)
            ORDER BY s.start_time, s.id
            LIMIT $7 OFFSET $8""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        session_type,
        pod_id,
        status,
        start,
        end,
        limit,
        offset,
    )


async def update(conn: Conn, session_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "study_sessions",
        changes,
        EDITABLE_COLUMNS,
        where="id = $1",
        where_args=[session_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def set_status(conn: Conn, session_id: uuid.UUID, status: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        """UPDATE study_sessions SET status = $2::text, updated_at = NOW(),
                  started_at = CASE WHEN $2::text = 'ongoing' THEN NOW() ELSE started_at END,
                  ended_at = CASE WHEN $2::text IN ('completed', 'cancelled') THEN NOW()
                                  ELSE ended_at END
           WHERE id = $1 RETURNING status, started_at, ended_at""",
        session_id,
        status,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


# --- participants ---


async def get_participant(
    db: Executor, session_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, status, role FROM session_participants WHERE session_id = $1 AND user_id = $2"  # noqa: S608 (composed of constants; values are parameters)
        + (" FOR UPDATE" if lock else ""),
        session_id,
        user_id,
    )


async def upsert_participant(
    conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID, *, role: str, status: str
) -> None:
    await conn.execute(
        """INSERT INTO session_participants (session_id, user_id, role, status)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (session_id, user_id) DO UPDATE SET status = EXCLUDED.status""",
        session_id,
        user_id,
        role,
        status,
    )


async def invite_participant(
    conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> None:
    """An invitation (status 'invited'; a declined one is renewed)."""
    await conn.execute(
        """INSERT INTO session_participants (session_id, user_id, role, status)
           VALUES ($1, $2, $3, 'invited')
           ON CONFLICT (session_id, user_id) DO UPDATE SET status = 'invited', role = $3""",
        session_id,
        user_id,
        role,
    )


async def user_brief(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT id, account_status FROM users WHERE id = $1", user_id)


async def banned_from_pod(db: Executor, pod_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            """SELECT EXISTS(SELECT 1 FROM pod_memberships
                              WHERE pod_id = $1 AND user_id = $2 AND status = 'banned')""",
            pod_id,
            user_id,
        )
    )


async def delete_participant(conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await conn.execute(
        "DELETE FROM session_participants WHERE session_id = $1 AND user_id = $2",
        session_id,
        user_id,
    )


async def change_participant_count(conn: Conn, session_id: uuid.UUID, delta: int) -> int:
    count: int = await conn.fetchval(
        "UPDATE study_sessions SET current_participants = current_participants + $2"
        " WHERE id = $1 RETURNING current_participants",
        session_id,
        delta,
    )
    return count


async def participants(db: Executor, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT u.id AS user_id, u.username, u.first_name, u.last_name, u.avatar_url,
                  sp.status, sp.role, sp.joined_at, sp.left_at, sp.attendance_duration,
                  sp.attendance_seconds, sp.present_since IS NOT NULL AS present
           FROM session_participants sp JOIN users u ON u.id = sp.user_id
           WHERE sp.session_id = $1 AND sp.status <> 'declined'
           ORDER BY CASE sp.role WHEN 'organizer' THEN 0 WHEN 'presenter' THEN 1 ELSE 2 END,
                    sp.created_at, u.id""",
        session_id,
    )


async def mark_present_many(
    db: Executor, session_ids: list[uuid.UUID], user_ids: list[uuid.UUID]
) -> list[asyncpg.Record]:
    """The users' first devices entered the live rooms (on any node): many (session, user)
    pairs, each at most once, in one statement (a class arriving at once); rows are locked in
    one order, whoever else writes them. A row per participant, with the stretch's start, the
    session's pod and subject, and whether this began a stretch of presence (`began`: false
    when already present); none for who is not a participant."""
    return await db.fetch(
        """WITH arrivals AS (
               SELECT p.id FROM session_participants p
               JOIN unnest($1::uuid[], $2::uuid[]) AS c(session_id, user_id)
                 ON p.session_id = c.session_id AND p.user_id = c.user_id
               ORDER BY p.id FOR UPDATE OF p)
           UPDATE session_participants p
           SET present_since = COALESCE(p.present_since, NOW()),
               joined_at = COALESCE(p.joined_at, NOW()),
               status = CASE WHEN p.status IN ('invited', 'accepted', 'missed') THEN 'attended'
                             ELSE p.status END
           FROM arrivals, study_sessions s LEFT JOIN pods pd ON pd.id = s.pod_id
           WHERE p.id = arrivals.id AND s.id = p.session_id
           RETURNING p.session_id, p.user_id, p.present_since AS since,
                     p.present_since = NOW() AS began, s.pod_id,
                     COALESCE(pd.subject, s.tags[1]) AS subject""",
        session_ids,
        user_ids,
    )


# Ends a presence interval: adds it to the attendance (seconds, and minutes rounded up).
_CLOSE_INTERVAL = """
    attendance_seconds = p.attendance_seconds
        + GREATEST(0, EXTRACT(EPOCH FROM NOW() - p.present_since))::int,
    attendance_duration = CEIL((p.attendance_seconds
        + GREATEST(0, EXTRACT(EPOCH FROM NOW() - p.present_since)))::numeric / 60)::int,
    left_at = NOW(),
    present_since = NULL"""


# What ending a stretch returns: who, when it began and ended, and the session's pod and
# subject (what the analytics event of the stretch needs).
_CLOSED = """RETURNING p.session_id, p.user_id, old.since, p.left_at AS until, s.pod_id,
                     COALESCE(pd.subject, s.tags[1]) AS subject"""


async def mark_absent(
    db: Executor, session_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record | None:
    """The user's last device left the live room: add the interval to their attendance.
    Returns the stretch that ended (None: they were not present: nothing changed)."""
    rows = await mark_absent_many(db, [session_id], [user_id])
    return rows[0] if rows else None


async def mark_absent_many(
    db: Executor, session_ids: list[uuid.UUID], user_ids: list[uuid.UUID]
) -> list[asyncpg.Record]:
    """`mark_absent` for many (session, user) pairs, each at most once, in one statement."""
    return await db.fetch(
        f"""UPDATE session_participants p SET {_CLOSE_INTERVAL}
            FROM (SELECT p.id, p.present_since AS since FROM session_participants p
                   JOIN unnest($1::uuid[], $2::uuid[]) AS c(session_id, user_id)
                     ON p.session_id = c.session_id AND p.user_id = c.user_id
                   WHERE p.present_since IS NOT NULL
                   ORDER BY p.id FOR UPDATE OF p) old,
                 study_sessions s LEFT JOIN pods pd ON pd.id = s.pod_id
            WHERE p.id = old.id AND s.id = p.session_id
            {_CLOSED}""",  # noqa: S608 (composed of constants; values are parameters)
        session_ids,
        user_ids,
    )


async def record_read(db: Executor, session_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> None:
    await db.execute(
        """UPDATE session_participants SET last_read_seq = GREATEST(last_read_seq, $3)
           WHERE session_id = $1 AND user_id = $2""",
        session_id,
        user_id,
        seq,
    )


async def close_attendance(conn: Conn, session_id: uuid.UUID) -> list[asyncpg.Record]:
    """At the end of a session: close every open presence interval (returned, as
    `mark_absent` returns one), and mark accepted participants who never came as missed."""
    closed = await conn.fetch(
        f"""UPDATE session_participants p SET {_CLOSE_INTERVAL}
            FROM (SELECT id, present_since AS since FROM session_participants
                   WHERE session_id = $1 AND present_since IS NOT NULL
                   ORDER BY id FOR UPDATE) old,
                 study_sessions s LEFT JOIN pods pd ON pd.id = s.pod_id
            WHERE p.id = old.id AND s.id = p.session_id
            {_CLOSED}""",  # noqa: S608 (composed of constants; values are parameters)
        session_id,
    )
    await conn.execute(
        """UPDATE session_participants SET status = 'missed'
           WHERE session_id = $1 AND status IN ('invited', 'accepted') AND joined_at IS NULL""",
        session_id,
    )
    return closed


# --- focus timers ---


async def focus_state(db: Executor, room: str) -> str | None:
    """The room's focus timer as stored (FocusState JSON text)."""
    value: str | None = await db.fetchval(
        "SELECT state::text FROM focus_timers WHERE room = $1", room
    )
    return value


async def lock_focus(conn: Conn, room: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT state::text FROM focus_timers WHERE room = $1 FOR UPDATE", room
    )
    return value


async def save_focus(conn: Conn, room: str, state: str, version: int) -> None:
    await conn.execute(
        """INSERT INTO focus_timers (room, state, version) VALUES ($1, $2::text::jsonb, $3)
           ON CONFLICT (room) DO UPDATE
           SET state = EXCLUDED.state, version = EXCLUDED.version, updated_at = NOW()""",
        room,
        state,
        version,
    )


# --- messages ---

MESSAGE_COLUMNS = """m.id, m.session_id, m.seq, m.sender_id, u.username AS sender_username,
    m.message_type, m.content, m.file_url, m.metadata, m.client_message_id, m.created_at,
    m.retracted_at"""


async def messages_after(
    db: Executor, session_id: uuid.UUID, after: int, limit: int, upto: int | None = None
) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {MESSAGE_COLUMNS}
            FROM session_messages m LEFT JOIN users u ON u.id = m.sender_id
            WHERE m.session_id = $1 AND m.seq > $2 AND ($4::bigint IS NULL OR m.seq <= $4)
            ORDER BY m.seq LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        session_id,
        after,
        limit,
        upto,
    )


async def messages_before(
    db: Executor, session_id: uuid.UUID, before: int, limit: int
) -> list[asyncpg.Record]:
    rows = await db.fetch(
        f"""SELECT {MESSAGE_COLUMNS}
            FROM session_messages m LEFT JOIN users u ON u.id = m.sender_id
            WHERE m.session_id = $1 AND m.seq < $2
            ORDER BY m.seq DESC LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        session_id,
        before,
        limit,
    )
    return list(reversed(rows))


async def last_seq(db: Executor, session_id: uuid.UUID) -> int:
    value = await db.fetchval("SELECT last_seq FROM session_seqs WHERE session_id = $1", session_id)
    return int(value or 0)


async def positions(db: Executor, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The latest sequence of each session room (one query for all of a node's rooms)."""
    rows = await db.fetch(
        "SELECT session_id, last_seq FROM session_seqs WHERE session_id = ANY($1::uuid[])",
        session_ids,
    )
    return {r["session_id"]: int(r["last_seq"]) for r in rows}


async def set_retracted(
    db: Executor, message_id: uuid.UUID, retracted: bool
) -> asyncpg.Record | None:
    """Mark a stored message removed by moderation (or restored); returns it as history now
    shows it."""
    return await db.fetchrow(
        f"""WITH changed AS (
                UPDATE session_messages
                SET retracted_at = CASE WHEN $2 THEN COALESCE(retracted_at, NOW()) END
                WHERE id = $1 RETURNING *)
            SELECT {MESSAGE_COLUMNS} FROM changed m LEFT JOIN users u ON u.id = m.sender_id""",  # noqa: S608 (composed of constants; values are parameters)
        message_id,
        retracted,
    )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: uuid.UUID
    seq: int
    created_at: dt.datetime
    duplicate: bool  # the client id was already stored: this is the earlier row


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What `store_batch` did: one result per input, in input order (None: the session no
    longer exists or is completed or cancelled), and the analytics event written for each
    message newly stored that asked for one (input index, row as `EVENTS_WRITTEN` has it)."""

    results: list[StoredMessage | None]
    events: list[tuple[int, asyncpg.Record]]


# The chat store's one statement: a batch of messages (of one room or many) is stored, with
# their rooms' sequence numbers and their analytics events, in a single round trip and a
# single implicit transaction. A message used to cost six (BEGIN, lock, known client ids,
# insert, events, COMMIT), and at ordinary rates each one left the node idle until PostgreSQL
# answered: a wake-up each, which on a VM costs more CPU than the query (bench/README.md).
#
# `locked` takes the rooms' session_seqs rows in id order (concurrent batches cannot
# deadlock) and, waiting for a concurrent batch of the same room, sees that batch's last_seq
# (READ COMMITTED re-reads a locked row), so sequences stay gap-free and increasing across
# every node. Only open rooms are locked: a message to a closed or deleted one is not stored.
# `known` finds client ids stored before; being one statement it reads with the snapshot
# taken before the lock, so a retry of a message committed by a concurrent batch meanwhile is
# not seen, and its insert breaks idx_session_messages_client_id: `store_batch` then runs the
# statement again (nothing was written), which sees it. `firsts` marks a client id repeated
# within the batch: the first one is stored, the others are its duplicates.
_STORE = f"""WITH input AS (
      SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                           $6::text[], $7::jsonb[], $8::text[], $9::bool[])
        WITH ORDINALITY AS i(id, session_id, sender_id, message_type, content, file_url,
                             metadata, cid, record, ord)),
    locked AS (
      SELECT session_id, last_seq FROM session_seqs
       WHERE session_id = ANY($2::uuid[]) AND open
       ORDER BY session_id FOR UPDATE),
    known AS (
      SELECT i.ord, m.id, m.seq, m.created_at
        FROM input i JOIN session_messages m
          ON m.session_id = i.session_id AND m.sender_id = i.sender_id
         AND m.client_message_id = i.cid),
    firsts AS (
      SELECT i.*, CASE WHEN i.cid IS NULL THEN i.ord
                       ELSE min(i.ord) OVER (PARTITION BY i.session_id, i.sender_id, i.cid)
                  END AS first_ord
        FROM input i
       WHERE i.session_id IN (SELECT session_id FROM locked)
         AND i.ord NOT IN (SELECT ord FROM known)),
    fresh AS (
      SELECT f.*, l.last_seq + row_number() OVER (PARTITION BY f.session_id ORDER BY f.ord)
               AS seq
        FROM firsts f JOIN locked l USING (session_id)
       WHERE f.first_ord = f.ord),
    inserted AS (
      INSERT INTO session_messages
        (id, session_id, sender_id, seq, message_type, content, file_url, metadata,
         client_message_id)
      SELECT id, session_id, sender_id, seq, message_type, content, file_url, metadata, cid
        FROM fresh ORDER BY ord
      RETURNING id, created_at),
    seqs AS (
      UPDATE session_seqs q SET last_seq = top.seq
        FROM (SELECT session_id, max(seq) AS seq FROM fresh GROUP BY session_id) top
       WHERE q.session_id = top.session_id),
    {
    events_ctes('''(SELECT f.sender_id AS user_id, $10::text AS kind, n.created_at AS at,
                            NULL::uuid AS pod_id, f.session_id, NULL::float8 AS value,
                            jsonb_build_object('messageId', f.id::text, 'seq', f.seq) AS meta,
                            f.id::text AS dedupe_key, f.ord AS i
                       FROM fresh f JOIN inserted n USING (id) WHERE f.record) AS t''')
},
    ev_rows AS ({EVENTS_WRITTEN})
    SELECT i.ord, l.session_id IS NOT NULL AS open,
           COALESCE(k.id, f.id) AS id, COALESCE(k.seq, f.seq) AS seq,
           COALESCE(k.created_at, n.created_at) AS created_at,
           k.id IS NOT NULL OR fi.first_ord <> i.ord AS duplicate,
           e.id AS event_id, e.local_date, e.local_hour, e.timezone, e.pod_id
      FROM input i
      LEFT JOIN locked l USING (session_id)
      LEFT JOIN known k ON k.ord = i.ord
      LEFT JOIN firsts fi ON fi.ord = i.ord
      LEFT JOIN fresh f ON f.ord = fi.first_ord
      LEFT JOIN inserted n ON n.id = f.id
      LEFT JOIN ev_rows e ON e.i = i.ord AND fi.first_ord = i.ord
     ORDER BY i.ord"""  # noqa: S608 (composed of constants; values are parameters)
_CID_INDEX = "idx_session_messages_client_id"
_CID_RETRIES = 3


async def warm_store(conn: Conn) -> None:
    """Prepare `store_batch`'s statement on a new connection (run with empty input: nothing
    is read or written), so the first message it stores waits for no parsing and no type
    introspection (~10-20 ms, several round trips, on the first batch of each connection)."""
    await conn.fetch(_STORE, *([[]] * 9), "")


async def store_batch(conn: Conn, batch: list[dict[str, Any]], *, event_kind: str) -> StoredBatch:
    """Store messages of one or many rooms in one statement (see `_STORE`), on a connection
    outside any transaction of the caller's.

    Each room's row is locked before its sequence numbers are handed out, which makes them
    gap-free and strictly increasing across every node. A message whose (room, sender,
    client id) is already stored, or appears earlier in the same batch, is not stored again:
    the earlier row comes back, flagged `duplicate`. A message newly stored whose `record` is
    true gets an analytics event of kind `event_kind`.
    """
    for attempt in range(_CID_RETRIES):
        try:
            rows = await conn.fetch(
                _STORE,
                [uuid.uuid4() for _ in batch],
                [m["session_id"] for m in batch],
                [m["sender_id"] for m in batch],
                [m["message_type"] for m in batch],
                [m["content"] for m in batch],
                [m.get("file_url") for m in batch],
                [m.get("metadata") or {} for m in batch],
                [m.get("client_message_id") for m in batch],
                [bool(m.get("record")) for m in batch],
                event_kind,
            )
            break
        except asyncpg.UniqueViolationError as exc:
            # A concurrent batch stored one of these client ids after this statement's
            # snapshot was taken: the next run sees it (and returns it as a duplicate).
            if exc.constraint_name != _CID_INDEX or attempt == _CID_RETRIES - 1:
                raise
    results: list[StoredMessage | None] = []
    events: list[tuple[int, asyncpg.Record]] = []
    for index, row in enumerate(rows):
        if not row["open"]:
            results.append(None)
            continue
        results.append(StoredMessage(row["id"], row["seq"], row["created_at"], row["duplicate"]))
        if row["event_id"] is not None:
            events.append((index, row))
    return StoredBatch(results, events)
