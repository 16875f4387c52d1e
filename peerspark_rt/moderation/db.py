"""SQL for moderation: the queue of held content, and the author history the local rules need."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..infra.dbtypes import Executor

HELD_COLUMNS = """h.id, h.content_type, h.author_id, u.username AS author_username, h.pod_id,
    h.session_id, h.content, h.snapshot, h.reason, h.rule, h.categories, h.status, h.reviewer_id,
    h.review_note, h.reviewed_at, h.published_id, h.created_at, h.updated_at"""

# Whom a held item is for, besides platform moderators: moderators (and up) of its pod, and the
# organizer of its study session. {viewer} is the viewer's parameter.
REVIEWABLE_BY = """(
    (h.pod_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM pod_memberships pm
        WHERE pm.pod_id = h.pod_id AND pm.user_id = {viewer} AND pm.status = 'active'
          AND pm.role IN ('moderator', 'admin', 'owner')))
    OR (h.session_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM study_sessions s WHERE s.id = h.session_id AND s.organizer_id = {viewer}))
)"""


async def session_pod(db: Executor, session_id: uuid.UUID) -> uuid.UUID | None:
    value: uuid.UUID | None = await db.fetchval(
        "SELECT pod_id FROM study_sessions WHERE id = $1", session_id
    )
    return value


async def insert_held(conn: Executor, values: dict[str, Any]) -> uuid.UUID:
    """Queue an item; with a dedupe key already queued, the earlier item's id comes back."""
    held_id: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO moderation_queue
             (content_type, author_id, pod_id, session_id, content, snapshot, reason, rule,
              categories, dedupe_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (author_id, content_type, dedupe_key) WHERE dedupe_key IS NOT NULL
           DO NOTHING
           RETURNING id""",
        values["content_type"],
        values["author_id"],
        values["pod_id"],
        values["session_id"],
        values["content"],
        values["snapshot"],
        values["reason"],
        values["rule"],
        list(values["categories"]),
        values["dedupe_key"],
    )
    if held_id is None:
        held_id = await conn.fetchval(
            """SELECT id FROM moderation_queue
               WHERE author_id = $1 AND content_type = $2 AND dedupe_key = $3""",
            values["author_id"],
            values["content_type"],
            values["dedupe_key"],
        )
    if held_id is None:
        raise RuntimeError("held_id is missing")
    return held_id


async def get_held(db: Executor, held_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {HELD_COLUMNS} FROM moderation_queue h JOIN users u ON u.id = h.author_id
            WHERE h.id = $1""",  # noqa: S608 (composed of constants; values are parameters)
        held_id,
    )


async def can_review(db: Executor, held_id: uuid.UUID, viewer: uuid.UUID) -> bool:
    found = await db.fetchval(
        f"SELECT 1 FROM moderation_queue h WHERE h.id = $1 AND {REVIEWABLE_BY.format(viewer='$2')}",  # noqa: S608 (composed of constants; values are parameters)
        held_id,
        viewer,
    )
    return bool(found)


async def list_held(
    db: Executor,
    viewer: uuid.UUID,
    *,
    everything: bool,
    mine: bool,
    pod_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    status: str | None,
    content_type: str | None,
    before: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on (created_at, id).

    `mine`: the viewer's own held content. Otherwise `everything` (platform moderators) or only
    what the viewer may review; the caller has checked the viewer may review `pod_id` or
    `session_id` when given."""
    scope = (
        "h.author_id = $1" if mine else ("$1::uuid IS NOT NULL" if everything else REVIEWABLE_BY)
    )
    return await db.fetch(
        f"""SELECT {HELD_COLUMNS} FROM moderation_queue h JOIN users u ON u.id = h.author_id
            WHERE {scope.format(viewer="$1")}
              AND ($2::uuid IS NULL OR h.pod_id = $2)
              AND ($3::uuid IS NULL OR h.session_id = $3)
              AND ($4::text IS NULL OR h.status = $4)
              AND ($5::text IS NULL OR h.content_type = $5)
              AND ($6::timestamptz IS NULL OR (h.created_at, h.id) < ($6, $7::uuid))
            ORDER BY h.created_at DESC, h.id DESC
            LIMIT $8""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        pod_id,
        session_id,
        status,
        content_type,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


async def claim(
    db: Executor, held_id: uuid.UUID, reviewer: uuid.UUID, status: str, note: str | None
) -> bool:
    """Decide a pending item; False when someone decided it first."""
    result = await db.execute(
        """UPDATE moderation_queue
           SET status = $3, reviewer_id = $2, review_note = $4, reviewed_at = NOW(),
               updated_at = NOW()
           WHERE id = $1 AND status = 'pending'""",
        held_id,
        reviewer,
        status,
        note,
    )
    return result.endswith(" 1")


async def unclaim(db: Executor, held_id: uuid.UUID) -> None:
    """Put an approval back to pending (its content could not be published)."""
    await db.execute(
        """UPDATE moderation_queue
           SET status = 'pending', reviewer_id = NULL, review_note = NULL, reviewed_at = NULL,
               updated_at = NOW()
           WHERE id = $1""",
        held_id,
    )


async def set_published(db: Executor, held_id: uuid.UUID, published_id: uuid.UUID | None) -> None:
    await db.execute(
        "UPDATE moderation_queue SET published_id = $2, updated_at = NOW() WHERE id = $1",
        held_id,
        published_id,
    )


# --- the author's recent content, for the local rules ------------------------------------------


async def recent_posts(db: Executor, author_id: uuid.UUID, text: str) -> asyncpg.Record:
    """Posts by the author in the last hour, and how similar (pg_trgm, 0-1) the most similar
    of their posts of the last day is to `text`."""
    row = await db.fetchrow(
        """SELECT
             (SELECT count(*) FROM posts
               WHERE author_id = $1 AND created_at > NOW() - INTERVAL '1 hour'
                 AND coalesce(status, 'published') <> 'deleted') AS last_hour,
             (SELECT coalesce(max(similarity(p.content, $2)), 0) FROM (
                 SELECT content FROM posts
                 WHERE author_id = $1 AND created_at > NOW() - INTERVAL '1 day'
                   AND coalesce(status, 'published') <> 'deleted'
                 ORDER BY created_at DESC LIMIT 50) p) AS similarity""",
        author_id,
        text,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def comment_similarity(db: Executor, author_id: uuid.UUID, text: str) -> float:
    """How similar (0-1) the author's most similar comment of the last day is to `text`."""
    value = await db.fetchval(
        """SELECT coalesce(max(similarity(c.content, $2)), 0) FROM (
               SELECT content FROM comments
               WHERE author_id = $1 AND created_at > NOW() - INTERVAL '1 day'
                 AND coalesce(status, 'published') <> 'deleted'
               ORDER BY created_at DESC LIMIT 50) c""",
        author_id,
        text,
    )
    return float(value or 0)
