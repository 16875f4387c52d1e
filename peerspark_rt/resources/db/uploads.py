"""SQL for uploaded files."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from ...infra.dbtypes import Conn, Executor

UPLOAD_COLUMNS = """id, owner_id, storage_key, backend, original_name, content_type, size_bytes,
    attached_to, attached_id, created_at"""


async def insert(
    conn: Executor,
    *,
    owner_id: uuid.UUID,
    storage_key: str,
    backend: str,
    original_name: str,
    content_type: str,
    size_bytes: int,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO uploads (owner_id, storage_key, backend, original_name, content_type,
                                 size_bytes)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {UPLOAD_COLUMNS}""",  # noqa: S608 (composed of constants; values are parameters)
        owner_id,
        storage_key,
        backend,
        original_name,
        content_type,
        size_bytes,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def by_key(db: Executor, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE storage_key = $1", key)  # noqa: S608 (composed of constants; values are parameters)


async def attach(
    conn: Conn, upload_id: uuid.UUID, owner_id: uuid.UUID, kind: str, target: uuid.UUID
) -> asyncpg.Record | None:
    """Mark the owner's unattached upload as used by `target`; None if it is not theirs or
    already used (one file backs one thing, so deleting that thing can delete the file)."""
    return await conn.fetchrow(
        f"""UPDATE uploads SET attached_to = $3, attached_id = $4
            WHERE id = $1 AND owner_id = $2 AND attached_to IS NULL
            RETURNING {UPLOAD_COLUMNS}""",  # noqa: S608 (composed of constants; values are parameters)
        upload_id,
        owner_id,
        kind,
        target,
    )


async def delete(conn: Conn, upload_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"DELETE FROM uploads WHERE id = $1 RETURNING {UPLOAD_COLUMNS}",  # noqa: S608 (composed of constants; values are parameters)
        upload_id,
    )


async def delete_unused(
    conn: Conn, *, unattached_for: dt.timedelta, released_for: dt.timedelta, limit: int
) -> list[asyncpg.Record]:
    """Delete up to `limit` of each kind of unused upload and return them: never attached
    within `unattached_for` of being uploaded, or released (the post using it went) more than
    `released_for` ago. Rows another transaction is attaching right now are skipped; the
    locking reads recheck the conditions, so one attached meanwhile is kept."""
    return await conn.fetch(
        f"""WITH unattached AS (
                SELECT id FROM uploads
                WHERE attached_to IS NULL AND created_at < NOW() - $1::interval
                ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED),
            released AS (
                SELECT id FROM uploads WHERE released_at < NOW() - $2::interval
                ORDER BY released_at LIMIT $3 FOR UPDATE SKIP LOCKED)
            DELETE FROM uploads
            WHERE id IN (SELECT id FROM unattached UNION SELECT id FROM released)
            RETURNING {UPLOAD_COLUMNS}""",  # noqa: S608 (composed of constants; values are parameters)
        unattached_for,
        released_for,
        limit,
    )
