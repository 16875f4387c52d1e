"""SQL for the AI assistant: conversations and messages, daily token usage, and retrieving
passages from resources a user may read."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..infra.dbtypes import Conn, Executor
from ..resources import db as resources_db

# --- conversations and messages ---------------------------------------------------------------

CONVERSATION_COLUMNS = """c.id, c.user_id, c.session_id, c.conversation_type, c.context,
    c.created_at,
    (SELECT count(*) FROM ai_messages m WHERE m.conversation_id = c.id) AS message_count,
    (SELECT max(m.created_at) FROM ai_messages m WHERE m.conversation_id = c.id) AS last_message_at,
    (SELECT coalesce(sum(m.tokens_used), 0) FROM ai_messages m WHERE m.conversation_id = c.id)
        AS tokens_used,
    (SELECT left(m.content, 120) FROM ai_messages m
      WHERE m.conversation_id = c.id AND m.role = 'user'
      ORDER BY m.created_at, m.id LIMIT 1) AS title"""

MESSAGE_COLUMNS = "id, role, content, message_type, metadata, tokens_used, created_at"


async def get_conversation(
    db: Executor, conversation_id: uuid.UUID, user_id: uuid.UUID
) -> asyncpg.Record | None:
    """The conversation if it is the user's own."""
    return await db.fetchrow(
        f"SELECT {CONVERSATION_COLUMNS} FROM ai_conversations c WHERE c.id = $1 AND c.user_id = $2",  # noqa: S608 (composed of constants; values are parameters)
        conversation_id,
        user_id,
    )


async def list_conversations(
    db: Executor,
    user_id: uuid.UUID,
    *,
    conversation_type: str | None,
    before: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on (created_at, id) over idx_ai_conversations_user."""
    return await db.fetch(
        f"""SELECT {CONVERSATION_COLUMNS} FROM ai_conversations c
            WHERE c.user_id = $1
              AND ($2::text IS NULL OR c.conversation_type = $2)
              AND ($3::timestamptz IS NULL OR (c.created_at, c.id) < ($3, $4::uuid))
            ORDER BY c.created_at DESC, c.id DESC
            LIMIT $5""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        conversation_type,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


async def messages_page(
    db: Executor,
    conversation_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Oldest first, keyset-paged on (created_at, id) over idx_ai_messages_conversation."""
    return await db.fetch(
        f"""SELECT {MESSAGE_COLUMNS} FROM ai_messages
            WHERE conversation_id = $1
              AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
            ORDER BY created_at, id
            LIMIT $4""",  # noqa: S608 (composed of constants; values are parameters)
        conversation_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def recent_history(
    db: Executor, conversation_id: uuid.UUID, limit: int
) -> list[asyncpg.Record]:
    """The latest `limit` user and assistant messages, oldest first (for the prompt)."""
    rows = await db.fetch(
        """SELECT role, content FROM ai_messages
           WHERE conversation_id = $1 AND role IN ('user', 'assistant')
           ORDER BY created_at DESC, id DESC LIMIT $2""",
        conversation_id,
        limit,
    )
    return list(reversed(rows))


async def delete_conversation(db: Executor, conversation_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    status = await db.execute(
        "DELETE FROM ai_conversations WHERE id = $1 AND user_id = $2", conversation_id, user_id
    )
    return status.endswith(" 1")


async def insert_conversation(
    conn: Conn,
    *,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    conversation_type: str,
    context: dict[str, Any],
    session_id: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO ai_conversations (id, user_id, session_id, conversation_type, context)
           VALUES ($1, $2, $3, $4, $5)""",
        conversation_id,
        user_id,
        session_id,
        conversation_type,
        context,
    )


async def lock_own_conversation(conn: Conn, conversation_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Lock the user's conversation for adding messages; False if it is gone."""
    found = await conn.fetchval(
        "SELECT 1 FROM ai_conversations WHERE id = $1 AND user_id = $2 FOR UPDATE",
        conversation_id,
        user_id,
    )
    return bool(found)


async def insert_message(
    conn: Conn,
    *,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    role: str,
    content: str,
    message_type: str = "text",
    metadata: dict[str, Any] | None = None,
    tokens_used: int | None = None,
    created_at: dt.datetime | None = None,
) -> asyncpg.Record:
    """`created_at` defaults to the wall clock (not the transaction's start), so a question and
    its answer stored in one transaction keep their order."""
    row = await conn.fetchrow(
        f"""INSERT INTO ai_messages
              (id, conversation_id, role, content, message_type, metadata, tokens_used,
               created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, clock_timestamp()))
            RETURNING {MESSAGE_COLUMNS}""",  # noqa: S608 (composed of constants; values are parameters)
        message_id,
        conversation_id,
        role,
        content,
        message_type,
        metadata or {},
        tokens_used,
        created_at,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


# --- daily token usage ------------------------------------------------------------------------


async def tokens_on(db: Executor, user_id: uuid.UUID, day: dt.date) -> int:
    value = await db.fetchval(
        "SELECT tokens FROM ai_usage_daily WHERE user_id = $1 AND day = $2", user_id, day
    )
    return int(value or 0)


async def reserve_tokens(
    db: Executor, user_id: uuid.UUID, day: dt.date, amount: int, limit: int
) -> int | None:
    """Add `amount` to the day's usage if the total stays within `limit`: the new total, or None
    when it would not fit (another call took the room first)."""
    value = await db.fetchval(
        """INSERT INTO ai_usage_daily (user_id, day, tokens)
           SELECT $1, $2, $3::bigint WHERE $3::bigint <= $4::bigint
           ON CONFLICT (user_id, day) DO UPDATE
             SET tokens = ai_usage_daily.tokens + EXCLUDED.tokens, updated_at = NOW()
             WHERE ai_usage_daily.tokens + EXCLUDED.tokens <= $4::bigint
           RETURNING tokens""",
        user_id,
        day,
        amount,
        limit,
    )
    return None if value is None else int(value)


async def settle_tokens(
    db: Executor, user_id: uuid.UUID, day: dt.date, reserved: int, used: int, *, query: bool
) -> int:
    """Replace a reservation by what was really used (0 to give it back); count the query."""
    value = await db.fetchval(
        """UPDATE ai_usage_daily
           SET tokens = GREATEST(0, tokens - $3::bigint + $4::bigint), queries = queries + $5,
               updated_at = NOW()
           WHERE user_id = $1 AND day = $2 RETURNING tokens""",
        user_id,
        day,
        reserved,
        used,
        1 if query else 0,
    )
    return int(value or 0)


# --- retrieval --------------------------------------------------------------------------------

# Who may read a resource is the vault's one rule, resources_db.visible.

# A question as a search: any of its words (stemmed, without stop words), ranked by how many
# match and where. Every word of a question is rarely in one passage, so requiring all of them
# (as websearch_to_tsquery would) finds too little. At most 32 words count.
QUESTION_QUERY = """SELECT coalesce(
    (SELECT to_tsquery('simple', string_agg(quote_literal(w.lexeme), ' | '))
       FROM (SELECT lexeme FROM unnest(to_tsvector('english', {question})) LIMIT 32) w),
    ''::tsquery) AS query"""

_HEADLINE = (
    "ts_headline('english', concat_ws(E'\\n', h.description, h.content, h.title), h.query, "
    '\'MaxFragments=2, MaxWords=45, MinWords=20, FragmentDelimiter=" … ", '
    'StartSel="", StopSel=""\')'
)


# Resources everyone in a session room may read: public ones, and those shared with the
# session's pod ({pod} is NULL for group sessions). Pod-only notes of the asker stay private.
ROOM_READABLE = """(r.status = 'active' AND (r.is_public OR ({pod}::uuid IS NOT NULL AND EXISTS (
    SELECT 1 FROM resource_shares rr
    WHERE rr.resource_id = r.id AND rr.shared_with_pod_id = {pod}::uuid))))"""


async def readable_by_room(db: Executor, resource_id: uuid.UUID, pod_id: uuid.UUID | None) -> bool:
    return bool(
        await db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM resources r WHERE r.id = $1 AND "  # noqa: S608 (composed of constants; values are parameters)
            f"{ROOM_READABLE.format(pod='$2')})",
            resource_id,
            pod_id,
        )
    )


async def visible_resource(
    db: Executor, resource_id: uuid.UUID, viewer: uuid.UUID
) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT r.id, r.title FROM resources r WHERE r.id = $1 AND "  # noqa: S608 (composed of constants; values are parameters)
        f"{resources_db.visible('r', '$2')}",
        resource_id,
        viewer,
    )


async def search_passages(
    db: Executor,
    viewer: uuid.UUID,
    question: str,
    *,
    pod_id: uuid.UUID | None,
    resource_id: uuid.UUID | None,
    limit: int,
    room: bool = False,
    room_pod_id: uuid.UUID | None = None,
) -> list[asyncpg.Record]:
    """The best passages for `question` among resources `viewer` may read (and, for an answer
    into a session room, that everyone there may read: public, or shared with the session's
    pod).

    With `resource_id`: that resource (whether or not the words match, since the user named it).
    With `pod_id`: resources of the pod or shared with it that match any of the question's
    words, best first. Passages are cut by ts_headline around the matching words, computed only
    for the rows kept.
    """
    return await db.fetch(
        f"""WITH q AS ({QUESTION_QUERY.format(question="$2")}),
            hits AS (
                SELECT r.id, r.title, r.description, r.content, q.query,
                       ts_rank(r.search_vector, q.query) AS rank
                FROM resources r, q
                WHERE {resources_db.visible("r", "$1")}
                  AND (NOT $6 OR {ROOM_READABLE.format(pod="$7")})
                  AND (($4::uuid IS NOT NULL AND r.id = $4)
                       OR ($4::uuid IS NULL AND $3::uuid IS NOT NULL
                           AND (r.pod_id = $3 OR EXISTS (
                                SELECT 1 FROM resource_shares rs
                                WHERE rs.resource_id = r.id AND rs.shared_with_pod_id = $3))
                           AND r.search_vector @@ q.query))
                ORDER BY rank DESC, r.id
                LIMIT $5)
            SELECT h.id, h.title, h.rank, {_HEADLINE} AS passage
            FROM hits h ORDER BY h.rank DESC, h.id""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        question,
        pod_id,
        resource_id,
        limit,
        room,
        room_pod_id,
    )
