"""SQL for the platform admin API: users by search, role and status changes, premium, and the
audit log every admin action writes in its own transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from ...infra.dbtypes import Executor

ADMIN_COLUMNS = """id, email, username, first_name, last_name, role, account_status, is_verified,
    is_premium, premium_expires_at, created_at, last_active_at,
    password_hash <> '' AS has_password,
    (SELECT coalesce(array_agg(o.provider ORDER BY o.provider), '{}')
       FROM user_oauth_accounts o WHERE o.user_id = users.id) AS providers"""


async def search_users(
    db: Executor,
    *,
    q: str | None,
    role: str | None,
    status: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on (created_at, id); `q` matches email or username (part of
    either, case-insensitively, through the trigram indexes)."""
    return await db.fetch(
        f"""SELECT {ADMIN_COLUMNS} FROM users
             WHERE ($1::text IS NULL OR email::text ILIKE '%' || $1 || '%'
                                     OR username::text ILIKE '%' || $1 || '%')
               AND ($2::text IS NULL OR role = $2)
               AND ($3::text IS NULL OR account_status = $3)
               AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT $6""",  # noqa: S608 (composed of constants; values are parameters)
        q,
        role,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def get_user(
    db: Executor, user_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {ADMIN_COLUMNS} FROM users WHERE id = $1"  # noqa: S608 (composed of constants; values are parameters)
        + (" FOR UPDATE" if lock else ""),
        user_id,
    )


async def user_by_email(db: Executor, email: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {ADMIN_COLUMNS} FROM users WHERE email = $1 FOR UPDATE",  # noqa: S608 (composed of constants; values are parameters)
        email,
    )


async def count_admins(db: Executor) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM users WHERE role = 'admin' AND account_status = 'active'"
        )
    )


async def set_role(db: Executor, user_id: uuid.UUID, role: str) -> None:
    await db.execute("UPDATE users SET role = $2, updated_at = NOW() WHERE id = $1", user_id, role)


async def set_status(db: Executor, user_id: uuid.UUID, status: str) -> None:
    await db.execute(
        "UPDATE users SET account_status = $2, updated_at = NOW() WHERE id = $1", user_id, status
    )


async def set_premium(
    db: Executor, user_id: uuid.UUID, premium: bool, expires_at: dt.datetime | None
) -> None:
    await db.execute(
        """UPDATE users SET is_premium = $2, premium_expires_at = $3, updated_at = NOW()
            WHERE id = $1""",
        user_id,
        premium,
        expires_at,
    )


async def expire_premium(db: Executor, limit: int) -> list[asyncpg.Record]:
    """End the premium of up to `limit` users whose premium ran out; who they were."""
    return await db.fetch(
        """UPDATE users u SET is_premium = FALSE, updated_at = NOW()
             FROM (SELECT id FROM users
                    WHERE is_premium AND premium_expires_at IS NOT NULL
                      AND premium_expires_at <= NOW()
                    ORDER BY premium_expires_at LIMIT $1
                    FOR UPDATE SKIP LOCKED) due
            WHERE u.id = due.id
        RETURNING u.id, u.email, u.username, u.first_name, u.premium_expires_at""",
        limit,
    )


async def audit(
    db: Executor,
    *,
    actor_id: uuid.UUID | None,
    actor_label: str,
    action: str,
    target_id: uuid.UUID | None,
    target_label: str | None,
    details: dict[str, Any],
) -> None:
    await db.execute(
        """INSERT INTO admin_audit_log
             (actor_id, actor_label, action, target_user_id, target_label, details)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        actor_id,
        actor_label,
        action,
        target_id,
        target_label,
        details,
    )


async def audit_page(
    db: Executor,
    *,
    target_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    before: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on the entry id."""
    return await db.fetch(
        """SELECT id, actor_id, actor_label, action, target_user_id, target_label, details,
                  created_at
             FROM admin_audit_log
            WHERE ($1::uuid IS NULL OR target_user_id = $1)
              AND ($2::uuid IS NULL OR actor_id = $2)
              AND ($3::bigint IS NULL OR id < $3)
            ORDER BY id DESC
            LIMIT $4""",
        target_id,
        actor_id,
        before,
        limit,
    )
