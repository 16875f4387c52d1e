"""SQL for mobile sync: each pending action's client id, applied once per user."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ...infra.dbtypes import Conn, Executor


async def claim(conn: Conn, user_id: uuid.UUID, client_action_id: str, action_type: str) -> bool:
    """Reserve the client id inside the caller's transaction. False when it is already taken;
    a concurrent sync holding the same id makes this wait until that one commits."""
    row = await conn.fetchval(
        """INSERT INTO sync_actions (user_id, client_action_id, action_type, ok, result)
           VALUES ($1, $2, $3, FALSE, '{}'::jsonb)
           ON CONFLICT (user_id, client_action_id) DO NOTHING RETURNING 1""",
        user_id,
        client_action_id,
        action_type,
    )
    return row is not None


async def get(conn: Executor, user_id: uuid.UUID, client_action_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT action_type, ok, result, created_at FROM sync_actions
           WHERE user_id = $1 AND client_action_id = $2""",
        user_id,
        client_action_id,
    )


async def record(
    conn: Conn, user_id: uuid.UUID, client_action_id: str, ok: bool, result: dict[str, Any]
) -> None:
    await conn.execute(
        """UPDATE sync_actions SET ok = $3, result = $4
           WHERE user_id = $1 AND client_action_id = $2""",
        user_id,
        client_action_id,
        ok,
        result,
    )


async def release(conn: Conn, user_id: uuid.UUID, client_action_id: str) -> None:
    await conn.execute(
        "DELETE FROM sync_actions WHERE user_id = $1 AND client_action_id = $2",
        user_id,
        client_action_id,
    )


async def purge_older_than(db: Executor, user_id: uuid.UUID, cutoff: dt.datetime) -> None:
    await db.execute(
        "DELETE FROM sync_actions WHERE user_id = $1 AND created_at < $2", user_id, cutoff
    )


async def now(db: Executor) -> dt.datetime:
    value: dt.datetime = await db.fetchval("SELECT clock_timestamp()")
    return value


async def notifications_since(
    db: Executor, user_id: uuid.UUID, since: dt.datetime, limit: int
) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, notification_type, title, message, action_url, metadata, is_read,
                  created_at
           FROM notifications WHERE recipient_id = $1 AND created_at > $2
           ORDER BY created_at, id LIMIT $3""",
        user_id,
        since,
        limit,
    )
