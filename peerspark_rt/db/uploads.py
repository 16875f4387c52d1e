"""SQL for uploaded files."""

from __future__ import annotations

import uuid

import asyncpg

from .types import Conn, Executor

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
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {UPLOAD_COLUMNS}""",
        owner_id,
        storage_key,
        backend,
        original_name,
        content_type,
        size_bytes,
    )
    assert row is not None
    return row


async def by_key(db: Executor, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE storage_key = $1", key)


async def attach(
    conn: Conn, upload_id: uuid.UUID, owner_id: uuid.UUID, kind: str, target: uuid.UUID
) -> asyncpg.Record | None:
    """Mark the owner's unattached upload as used by `target`; None if it is not theirs or
    already used (one file backs one thing, so deleting that thing can delete the file)."""
    return await conn.fetchrow(
        f"""UPDATE uploads SET attached_to = $3, attached_id = $4
            WHERE id = $1 AND owner_id = $2 AND attached_to IS NULL
            RETURNING {UPLOAD_COLUMNS}""",
        upload_id,
        owner_id,
        kind,
        target,
    )


async def delete(conn: Conn, upload_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"DELETE FROM uploads WHERE id = $1 RETURNING {UPLOAD_COLUMNS}", upload_id
    )
