"""SQL for notifications."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ..infra.dbtypes import Executor

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
    push_live: bool = True,
) -> asyncpg.Record:
    """Insert; the returned row also carries `push_live` (False: quiet hours, do not push)."""
    row = await conn.fetchrow(
        f"""INSERT INTO notifications
              (recipient_id, sender_id, notification_type, title, message, action_url, metadata,
               priority)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING {COLUMNS}, $9::bool AS push_live""",  # noqa: S608 (composed of constants; values are parameters)
        recipient_id,
        sender_id,
        notification_type,
        title,
        message,
        action_url,
        metadata,
        priority,
        push_live,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def unread_count(conn: Executor, recipient_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE recipient_id = $1 AND NOT is_read",
            recipient_id,
        )
    )


async def recipient(conn: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    """What deciding how to notify a user needs: their settings, zone and address."""
    return await conn.fetchrow(
        """SELECT id, email, first_name, timezone, notification_settings, account_status
             FROM users WHERE id = $1""",
        user_id,
    )


async def page(
    conn: Executor,
    recipient_id: uuid.UUID,
    *,
    unread_only: bool,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on (created_at, id) after the cursor `after`."""
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM notifications
             WHERE recipient_id = $1
               AND ($2::bool IS FALSE OR NOT is_read)
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT $5""",  # noqa: S608 (composed of constants; values are parameters)
        recipient_id,
        unread_only,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def mark_read(
    conn: Executor, recipient_id: uuid.UUID, notification_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE notifications SET is_read = TRUE, read_at = COALESCE(read_at, NOW())
             WHERE id = $1 AND recipient_id = $2
         RETURNING {COLUMNS}""",  # noqa: S608 (composed of constants; values are parameters)
        notification_id,
        recipient_id,
    )


async def mark_all_read(conn: Executor, recipient_id: uuid.UUID) -> int:
    status = await conn.execute(
        """UPDATE notifications SET is_read = TRUE, read_at = NOW()
            WHERE recipient_id = $1 AND NOT is_read""",
        recipient_id,
    )
    return int(status.split()[-1])


async def email_state(conn: Executor, notification_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT is_read, is_email_sent FROM notifications WHERE id = $1", notification_id
    )


async def mark_email_sent(conn: Executor, notification_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE notifications SET is_email_sent = TRUE WHERE id = $1", notification_id
    )


async def get_settings(conn: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT notification_settings, timezone FROM users WHERE id = $1", user_id
    )


async def set_settings(conn: Executor, user_id: uuid.UUID, settings: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE users SET notification_settings = $2, updated_at = NOW() WHERE id = $1",
        user_id,
        settings,
    )


async def digest_recipients(
    conn: Executor, zone: str, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Active users of time zone `zone` who keep the daily digest on and have unread
    notifications from the last day that no email told them about; keyset-paged by id through
    idx_users_digest_zone."""
    return await conn.fetch(
        """SELECT u.id FROM users u
            WHERE COALESCE(u.timezone, 'UTC') = $1 AND u.account_status = 'active'
              AND ($2::uuid IS NULL OR u.id > $2)
              AND COALESCE(u.notification_settings->>'dailyDigest', 'true') <> 'false'
              AND EXISTS (SELECT 1 FROM notifications n
                           WHERE n.recipient_id = u.id AND NOT n.is_read
                             AND NOT n.is_email_sent
                             AND n.created_at > NOW() - INTERVAL '1 day')
            ORDER BY u.id
            LIMIT $3""",
        zone,
        after,
        limit,
    )


async def missed(conn: Executor, user_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """Unread notifications of the last day that no email has mentioned, newest first."""
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM notifications
             WHERE recipient_id = $1 AND NOT is_read AND NOT is_email_sent
               AND created_at > NOW() - INTERVAL '1 day'
             ORDER BY created_at DESC, id DESC
             LIMIT $2""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        limit,
    )


async def mark_many_email_sent(conn: Executor, ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE notifications SET is_email_sent = TRUE WHERE id = ANY($1::uuid[])", ids
    )


# --- Web Push ---


async def upsert_subscription(
    conn: Executor,
    *,
    user_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
    keep: int,
) -> asyncpg.Record:
    """Store a subscription (an endpoint already known moves to this user with its new keys);
    beyond `keep` per user the oldest go."""
    row = await conn.fetchrow(
        """INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, user_agent)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (endpoint) DO UPDATE
              SET user_id = EXCLUDED.user_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
                  user_agent = EXCLUDED.user_agent
           RETURNING id, (xmax = 0) AS created""",
        user_id,
        endpoint,
        p256dh,
        auth,
        user_agent,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    await conn.execute(
        """DELETE FROM push_subscriptions WHERE id IN (
             SELECT id FROM push_subscriptions WHERE user_id = $1
              ORDER BY created_at DESC, id DESC OFFSET $2)""",
        user_id,
        keep,
    )
    return row


async def delete_subscription(conn: Executor, user_id: uuid.UUID, endpoint: str) -> bool:
    status = await conn.execute(
        "DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2", user_id, endpoint
    )
    return status.endswith(" 1")


async def delete_subscription_by_id(conn: Executor, subscription_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM push_subscriptions WHERE id = $1", subscription_id)


async def subscriptions(conn: Executor, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1", user_id
    )


async def has_subscriptions(conn: Executor, user_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS(SELECT 1 FROM push_subscriptions WHERE user_id = $1)", user_id
        )
    )


async def mark_subscription_used(conn: Executor, subscription_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE push_subscriptions SET last_sent_at = NOW() WHERE id = $1", subscription_id
    )


async def push_state(conn: Executor, notification_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT n.id, n.recipient_id, n.notification_type, n.title, n.message, n.action_url,
                  n.created_at, n.is_read, n.is_push_sent, u.notification_settings,
                  u.account_status
             FROM notifications n JOIN users u ON u.id = n.recipient_id
            WHERE n.id = $1""",
        notification_id,
    )


async def mark_push_sent(conn: Executor, notification_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE notifications SET is_push_sent = TRUE WHERE id = $1", notification_id
    )
