"""SQL for comments and their likes.

A comment's `thread_path` is its parent's path plus "<UTC time to the microsecond><id>/", every
segment the same length, so sorting by it (byte order, COLLATE "C") lists a whole tree
depth-first with siblings oldest first. A page of the tree is a range scan of one index.
"""

from __future__ import annotations

import uuid

import asyncpg

from ...infra.dbtypes import Conn, Executor

COMMENT_COLUMNS = """c.id, c.post_id, c.author_id, c.parent_comment_id, c.content, c.is_anonymous,
    c.status, c.like_count, c.depth, c.thread_path, c.created_at, c.updated_at,
    u.username AS author_username, u.first_name AS author_first_name,
    u.last_name AS author_last_name, u.avatar_url AS author_avatar_url,
    u.is_verified AS author_is_verified,
    (SELECT count(*) FROM comments r WHERE r.parent_comment_id = c.id) AS reply_count,
    EXISTS (SELECT 1 FROM comment_interactions ci WHERE ci.comment_id = c.id
            AND ci.user_id = $1 AND ci.interaction_type = 'like') AS liked"""


async def insert_comment(
    conn: Conn,
    *,
    post_id: uuid.UUID,
    author_id: uuid.UUID,
    parent: asyncpg.Record | None,
    content: str,
    is_anonymous: bool,
) -> uuid.UUID:
    comment_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO comments (id, post_id, author_id, parent_comment_id, content, is_anonymous,
                                 depth, thread_path)
           VALUES ($1, $2, $3, $4, $5, $6, $7,
                   $8 || to_char(NOW() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
                      || replace(($1::uuid)::text, '-', '') || '/')""",
        comment_id,
        post_id,
        author_id,
        parent["id"] if parent else None,
        content,
        is_anonymous,
        parent["depth"] + 1 if parent else 0,
        parent["thread_path"] if parent else "",
    )
    return comment_id


async def get(db: Executor, viewer: uuid.UUID, comment_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {COMMENT_COLUMNS} FROM comments c LEFT JOIN users u ON u.id = c.author_id
            WHERE c.id = $2""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        comment_id,
    )


async def lock(conn: Conn, comment_id: uuid.UUID) -> asyncpg.Record | None:
    """The comment with its post's pod, author and visibility, row-locked."""
    return await conn.fetchrow(
        """SELECT c.id, c.post_id, c.author_id, c.parent_comment_id, c.content, c.is_anonymous,
                  c.status, c.depth, c.thread_path, p.pod_id, p.author_id AS post_author_id
           FROM comments c JOIN posts p ON p.id = c.post_id
           WHERE c.id = $1 FOR UPDATE OF c""",
        comment_id,
    )


async def thread_page(
    db: Executor,
    viewer: uuid.UUID,
    post_id: uuid.UUID,
    *,
    subtree_of: str | None,
    after: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Comments of a post in depth-first order after the path `after`; with `subtree_of` (a
    thread path) only that comment's descendants."""
    return await db.fetch(
        f"""SELECT {COMMENT_COLUMNS} FROM comments c LEFT JOIN users u ON u.id = c.author_id
            WHERE c.post_id = $2
              AND ($3::text IS NULL OR (c.thread_path > $3 AND c.thread_path < $3 || '~'))
              AND ($4::text IS NULL OR c.thread_path > $4)
            ORDER BY c.thread_path LIMIT $5""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        post_id,
        subtree_of,
        after,
        limit,
    )


async def set_status(conn: Conn, comment_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE comments SET status = $2, updated_at = NOW() WHERE id = $1", comment_id, status
    )


async def has_like(conn: Conn, comment_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM comment_interactions
                              WHERE comment_id = $1 AND user_id = $2
                                AND interaction_type = 'like')""",
            comment_id,
            user_id,
        )
    )


async def add_like(conn: Conn, comment_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        """INSERT INTO comment_interactions (comment_id, user_id, interaction_type)
           VALUES ($1, $2, 'like')
           ON CONFLICT (comment_id, user_id, interaction_type) DO NOTHING RETURNING id""",
        comment_id,
        user_id,
    )
    return row is not None


async def remove_like(conn: Conn, comment_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        """DELETE FROM comment_interactions
           WHERE comment_id = $1 AND user_id = $2 AND interaction_type = 'like' RETURNING id""",
        comment_id,
        user_id,
    )
    return row is not None


async def like_count(conn: Executor, comment_id: uuid.UUID) -> int:
    return int(await conn.fetchval("SELECT like_count FROM comments WHERE id = $1", comment_id))


async def describe_many(db: Executor, comment_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT c.id, c.author_id, c.post_id, c.status, c.content, p.pod_id
           FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.id = ANY($1::uuid[])""",
        comment_ids,
    )
