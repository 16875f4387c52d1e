"""SQL for the resource vault: resources, shares, ratings, bookmarks.

Who may see a resource is decided in one place, `visible()`, used by listing, fetching, search,
suggestions and downloads alike.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ...infra import sql as sql_builder
from ...infra.dbtypes import Conn, Executor

# What search highlights (ts_headline) wrap matches in: private-use characters no text holds,
# turned into <mark> once the text is escaped.
MARK_START = "\ue000"
MARK_END = "\ue001"

RESOURCE_TYPES = ("note", "flashcard", "document", "video", "audio", "link")
DIFFICULTIES = ("beginner", "intermediate", "advanced")
PERMISSIONS = ("view", "edit", "admin")
EDITABLE_COLUMNS = frozenset(
    {
        "title", "description", "resource_type", "content", "file_url", "thumbnail_url", "tags",
        "subject", "difficulty_level", "is_public",
    }
)  # fmt: skip


def visible(r: str = "r", viewer: str = "$1") -> str:
    """SQL true when the viewer may see resource `r`: its owner, a public one, one shared with
    them, or one shared with a pod they actively belong to. (The owner also still sees it while
    it is held for review after reports.)"""
    return f"""(({r}.status = 'active' OR ({r}.status = 'hidden' AND {r}.owner_id = {viewer}))
      AND ({r}.owner_id = {viewer} OR {r}.is_public
           OR EXISTS (SELECT 1 FROM resource_shares vs
                      WHERE vs.resource_id = {r}.id AND vs.shared_with_user_id = {viewer})
           OR EXISTS (SELECT 1 FROM resource_shares vs
                      JOIN pod_memberships vm ON vm.pod_id = vs.shared_with_pod_id
                      WHERE vs.resource_id = {r}.id AND vm.user_id = {viewer}
                        AND vm.status = 'active')))"""  # noqa: S608 (composed of constants; values are parameters)


def permission(r: str = "r", viewer: str = "$1") -> str:
    """SQL for the viewer's strongest grant on `r`: 3 admin, 2 edit, 1 view (NULL for none);
    the owner is 4."""
    return f"""(CASE WHEN {r}.owner_id = {viewer} THEN 4 ELSE (
        SELECT max(CASE s.permission_level WHEN 'admin' THEN 3 WHEN 'edit' THEN 2 ELSE 1 END)
        FROM resource_shares s
        WHERE s.resource_id = {r}.id
          AND (s.shared_with_user_id = {viewer}
               OR s.shared_with_pod_id IN (SELECT pm.pod_id FROM pod_memberships pm
                                           WHERE pm.user_id = {viewer} AND pm.status = 'active')))
        END)"""  # noqa: S608 (composed of constants; values are parameters)


# The viewer's ($1) own marks on resource r: their grant, their rating, their bookmark.
VIEWER_COLUMNS = f"""{permission()} AS my_permission,
    (SELECT rr.rating FROM resource_ratings rr WHERE rr.resource_id = r.id AND rr.user_id = $1)
        AS my_rating,
    EXISTS (SELECT 1 FROM resource_bookmarks rb WHERE rb.resource_id = r.id AND rb.user_id = $1)
        AS bookmarked"""  # noqa: S608 (composed of constants; values are parameters)
# Whose resources a viewer ($1) may see beyond the public, active ones can only be among (see
# `visible`): their own, those shared with them, those shared with a pod they actively belong to.
THEIRS = """SELECT r.id FROM resources r WHERE r.owner_id = $1
    UNION SELECT us.resource_id FROM resource_shares us WHERE us.shared_with_user_id = $1
    UNION SELECT ps.resource_id FROM resource_shares ps
          JOIN pod_memberships pm ON pm.pod_id = ps.shared_with_pod_id
          WHERE pm.user_id = $1 AND pm.status = 'active'"""
LIST_COLUMNS = f"""r.id, r.owner_id, r.pod_id, r.title, r.description, r.resource_type, r.file_url,
    r.file_size, r.file_type, r.thumbnail_url, r.metadata, r.tags, r.subject, r.difficulty_level,
    r.is_public, r.download_count, r.view_count, r.rating_average, r.rating_count, r.status,
    r.created_at, r.updated_at, r.upload_id,
    ou.username AS owner_username, ou.first_name AS owner_first_name,
    ou.last_name AS owner_last_name, ou.avatar_url AS owner_avatar_url,
    {VIEWER_COLUMNS},
    up.storage_key AS upload_key, up.backend AS upload_backend, up.original_name AS upload_name,
    up.content_type AS upload_type, up.size_bytes AS upload_size"""
DETAIL_COLUMNS = f"""{LIST_COLUMNS}, r.content,
    (SELECT rr.review FROM resource_ratings rr WHERE rr.resource_id = r.id AND rr.user_id = $1)
        AS my_review"""  # noqa: S608 (composed of constants; values are parameters)
OWNER_JOIN = "LEFT JOIN users ou ON ou.id = r.owner_id LEFT JOIN uploads up ON up.id = r.upload_id"


# what an upload changes besides the editable fields, and what a new resource also sets
FILE_COLUMNS = frozenset({"upload_id", "file_size", "file_type"})
INSERT_COLUMNS = (
    EDITABLE_COLUMNS | FILE_COLUMNS | {"id", "owner_id", "pod_id", "metadata", "status"}
)


async def insert(conn: Conn, values: dict[str, Any]) -> uuid.UUID:
    sql, args = sql_builder.insert("resources", values, INSERT_COLUMNS, suffix="RETURNING id")
    resource_id: uuid.UUID = await conn.fetchval(sql, *args)
    return resource_id


async def get_visible(
    db: Executor, viewer: uuid.UUID, resource_id: uuid.UUID
) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {DETAIL_COLUMNS} FROM resources r {OWNER_JOIN}
            WHERE r.id = $2 AND {visible()}""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        resource_id,
    )


async def lock(conn: Conn, resource_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, owner_id, pod_id, title, status, is_public, upload_id, file_url
           FROM resources WHERE id = $1 FOR UPDATE""",
        resource_id,
    )


async def update(conn: Conn, resource_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "resources",
        changes,
        EDITABLE_COLUMNS | FILE_COLUMNS,
        where="id = $1",
        where_args=[resource_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def set_status(conn: Conn, resource_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE resources SET status = $2, updated_at = NOW() WHERE id = $1", resource_id, status
    )


async def count_view(db: Executor, resource_id: uuid.UUID) -> None:
    await db.execute("UPDATE resources SET view_count = view_count + 1 WHERE id = $1", resource_id)


async def count_download(db: Executor, resource_id: uuid.UUID) -> int:
    return int(
        await db.fetchval(
            """UPDATE resources SET download_count = download_count + 1 WHERE id = $1
               RETURNING download_count""",
            resource_id,
        )
    )


# --- shares ---

SHARE_COLUMNS = """id, resource_id, shared_with_user_id, shared_with_pod_id, permission_level,
    shared_by_id, created_at"""


async def upsert_share(
    conn: Conn,
    resource_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    pod_id: uuid.UUID | None,
    permission_level: str,
    shared_by: uuid.UUID,
) -> tuple[asyncpg.Record, bool]:
    """Grant (or change) a share; returns (share, created)."""
    conflict = (
        "(shared_with_user_id, resource_id) WHERE shared_with_user_id IS NOT NULL"
        if user_id is not None
        else "(shared_with_pod_id, resource_id) WHERE shared_with_pod_id IS NOT NULL"
    )
    row = await conn.fetchrow(
        f"""INSERT INTO resource_shares (resource_id, shared_with_user_id, shared_with_pod_id,
                                         permission_level, shared_by_id)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT {conflict}
            DO UPDATE SET permission_level = EXCLUDED.permission_level,
                          shared_by_id = EXCLUDED.shared_by_id
            RETURNING {SHARE_COLUMNS}, (xmax = 0) AS created""",  # noqa: S608 (composed of constants; values are parameters)
        resource_id,
        user_id,
        pod_id,
        permission_level,
        shared_by,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row, bool(row["created"])


async def shares_of(db: Executor, resource_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {SHARE_COLUMNS} FROM resource_shares WHERE resource_id = $1
            ORDER BY created_at, id""",  # noqa: S608 (composed of constants; values are parameters)
        resource_id,
    )


# --- ratings ---


async def upsert_rating(
    conn: Conn, resource_id: uuid.UUID, user_id: uuid.UUID, rating: int, review: str | None
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO resource_ratings (resource_id, user_id, rating, review)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (resource_id, user_id)
           DO UPDATE SET rating = EXCLUDED.rating, review = EXCLUDED.review, updated_at = NOW()
           RETURNING rating, review, created_at, updated_at, (xmax = 0) AS created""",
        resource_id,
        user_id,
        rating,
        review,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def rating_summary(conn: Executor, resource_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT rating_average, rating_count FROM resources WHERE id = $1", resource_id
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


# --- bookmarks ---


async def has_bookmark(conn: Conn, resource_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM resource_bookmarks
                              WHERE resource_id = $1 AND user_id = $2)""",
            resource_id,
            user_id,
        )
    )


async def add_bookmark(conn: Conn, resource_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        """INSERT INTO resource_bookmarks (resource_id, user_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING 1""",
        resource_id,
        user_id,
    )
    return row is not None


async def remove_bookmark(conn: Conn, resource_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await conn.fetchval(
        "DELETE FROM resource_bookmarks WHERE resource_id = $1 AND user_id = $2 RETURNING 1",
        resource_id,
        user_id,
    )
    return row is not None


# --- mobile sync ---


async def changed_since(
    db: Executor, viewer: uuid.UUID, since: Any, limit: int
) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {LIST_COLUMNS} FROM resources r {OWNER_JOIN}
            WHERE r.updated_at > $2 AND {visible()}
            ORDER BY r.updated_at, r.id LIMIT $3""",  # noqa: S608 (composed of constants; values are parameters)
        viewer,
        since,
        limit,
    )


# --- moderation ---


async def describe_many(db: Executor, resource_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, owner_id, pod_id, status, title FROM resources WHERE id = ANY($1::uuid[])",
        resource_ids,
    )


async def is_visible(db: Executor, viewer: uuid.UUID, resource_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM resources r WHERE r.id = $2 AND {visible()})",  # noqa: S608 (composed of constants; values are parameters)
            viewer,
            resource_id,
        )
    )
