"""SQL for notifications."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from .types import Executor

COLUMNS = """id, recipient_id, sender_id, notification_type, title, message, action_url, metadata,
             is_read, is_email_sent, is_push_sent, priority, created_at, read_at"""


async def insert(
    conn: Executor,
    *,
    recipient_id: uuid.UUID,
    notification_type: str,
    title: str,
    message: str | None,
    action_url: str | None,
    metadata: dict[str, Any],
    sender_id: uuid.UUID | None,
    priority: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""INSERT INTO notifications
              (recipient_id, sender_id, notification_type, title, message, action_url, metadata,
               priority)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING {COLUMNS}""",
        recipient_id,
        sender_id,
        notification_type,
        title,
        message,
        action_url,
        metadata,
        priority,
    )
    assert row is not None
    return row


async def unread_count(conn: Executor, recipient_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND NOT is_read",
            recipient_id,
        )
    )
