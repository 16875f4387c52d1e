"""SQL for users and their authentication sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from ...infra import readcache
from ...infra import sql as sql_builder
from ...infra.dbtypes import Conn, Executor

PROFILE_COLUMNS = """
    id, email, username, first_name, last_name, avatar_url, bio, date_of_birth,
    education_level, institution, major, graduation_year, location, timezone,
    language_preference, is_verified, is_premium, premium_expires_at, account_status, role,
    privacy_settings, notification_settings, onboarding_completed, last_active_at,
    created_at, updated_at
"""

# Columns a user may change on their own profile (PATCH /api/auth/me).
EDITABLE_COLUMNS = frozenset(
    {
        "username", "first_name", "last_name", "avatar_url", "bio", "date_of_birth",
        "education_level", "institution", "major", "graduation_year", "location", "timezone",
        "language_preference", "privacy_settings", "notification_settings",
        "onboarding_completed",
    }
)  # fmt: skip


# what registration writes (the rest has defaults or is set by its own statement)
INSERT_COLUMNS = EDITABLE_COLUMNS | {
    "id", "email", "username", "password_hash", "role", "is_verified", "account_status"
}  # fmt: skip


async def insert_user(conn: Conn, values: dict[str, Any]) -> asyncpg.Record:
    sql, args = sql_builder.insert(
        "users", values, INSERT_COLUMNS, suffix=f"RETURNING {PROFILE_COLUMNS}"
    )
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def existing_identities(conn: Executor, email: str, username: str) -> tuple[bool, bool]:
    """Whether the email and the username are already taken (case-insensitively)."""
    row = await conn.fetchrow(
        "SELECT EXISTS(SELECT 1 FROM users WHERE email = $1) AS email,"
        " EXISTS(SELECT 1 FROM users WHERE username = $2) AS username",
        email,
        username,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return bool(row["email"]), bool(row["username"])


async def get_profile(conn: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PROFILE_COLUMNS} FROM users WHERE id = $1", user_id)  # noqa: S608 (composed of constants; values are parameters)


async def get_credentials(conn: Executor, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, email, username, first_name, role, is_premium, account_status,"
        " password_hash, is_verified FROM users WHERE email = $1",
        email,
    )


async def credentials_by_id(conn: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, email, username, first_name, last_name, role, is_premium, account_status,"
        " password_hash, is_verified FROM users WHERE id = $1 FOR UPDATE",
        user_id,
    )


async def update_profile(
    conn: Conn, user_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    sql, args = sql_builder.update(
        "users",
        changes,
        EDITABLE_COLUMNS,
        where="id = $1",
        where_args=[user_id],
        also="updated_at = NOW()",
        returning=PROFILE_COLUMNS,
    )
    return await conn.fetchrow(sql, *args)


async def set_password_hash(conn: Executor, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def share_active_pod(conn: Executor, a: uuid.UUID, b: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS(
                 SELECT 1 FROM pod_memberships x JOIN pod_memberships y USING (pod_id)
                 WHERE x.user_id = $1 AND y.user_id = $2
                   AND x.status = 'active' AND y.status = 'active')""",
            a,
            b,
        )
    )


# --- authentication sessions ---


async def insert_session(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    session_token: str,
    refresh_digest: str,
    device_info: dict[str, Any],
    ip_address: str | None,
    expires_at: datetime,
    remember_me: bool,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO user_sessions (user_id, session_token, refresh_token, device_info,
                                      ip_address, expires_at, remember_me)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, expires_at""",
        user_id,
        session_token,
        refresh_digest,
        device_info,
        ip_address,
        expires_at,
        remember_me,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


_SESSION_PRINCIPAL = """SELECT s.expires_at, s.created_at, u.id AS user_id, u.username, u.email,
       u.role, u.is_premium AND (u.premium_expires_at IS NULL
                                 OR u.premium_expires_at > NOW()) AS is_premium,
       u.account_status, u.is_verified{extra}
    FROM user_sessions s JOIN users u ON u.id = s.user_id
    WHERE s.id = $1 AND s.user_id = $2"""
_PRINCIPAL_ONLY = _SESSION_PRINCIPAL.format(extra="")
# ... and the cached reads' generation, in the same snapshot (infra/readcache.py says why)
_PRINCIPAL_AND_GENERATION = _SESSION_PRINCIPAL.format(
    extra=f", {readcache.GENERATION_EXPR} AS read_generation"
)


async def session_principal(
    conn: Executor, session_id: uuid.UUID, user_id: uuid.UUID, *, read_generation: bool = False
) -> asyncpg.Record | None:
    """The live session and the current state of its user, for authenticating a request;
    with `read_generation`, also the cached reads' generation (column read_generation)."""
    return await conn.fetchrow(
        _PRINCIPAL_AND_GENERATION if read_generation else _PRINCIPAL_ONLY, session_id, user_id
    )


async def lock_session(conn: Conn, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT s.id, s.user_id, s.refresh_token, s.expires_at, s.remember_me,
                  s.previous_refresh_token, s.rotated_at,
                  u.username, u.email, u.role, u.is_premium, u.account_status
           FROM user_sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id = $1 FOR UPDATE OF s""",
        session_id,
    )


async def rotate_session(
    conn: Conn,
    session_id: uuid.UUID,
    refresh_digest: str,
    previous_digest: str,
    rotated_at: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        """UPDATE user_sessions
           SET refresh_token = $2, previous_refresh_token = $3, rotated_at = $4,
               expires_at = $5, last_used_at = $4
           WHERE id = $1""",
        session_id,
        refresh_digest,
        previous_digest,
        rotated_at,
        expires_at,
    )


async def delete_session(conn: Executor, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "DELETE FROM user_sessions WHERE id = $1 AND user_id = $2", session_id, user_id
    )
    return status.endswith(" 1")


async def list_sessions(conn: Executor, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, device_info, host(ip_address) AS ip_address, created_at, last_used_at,
                  expires_at, remember_me
           FROM user_sessions WHERE user_id = $1 AND expires_at > NOW()
           ORDER BY created_at DESC""",
        user_id,
    )


async def delete_sessions(
    conn: Executor, user_id: uuid.UUID, keep: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """End every login session of the user but `keep`; the ids that ended."""
    rows = await conn.fetch(
        "DELETE FROM user_sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR id <> $2)"
        " RETURNING id",
        user_id,
        keep,
    )
    return [r["id"] for r in rows]


async def touch_last_active(conn: Executor, user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE users SET last_active_at = NOW() WHERE id = $1", user_id)


async def live_sessions(db: Executor, session_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these login sessions still exist and have not expired."""
    rows = await db.fetch(
        "SELECT id FROM user_sessions WHERE id = ANY($1::uuid[]) AND expires_at > NOW()",
        session_ids,
    )
    return {r["id"] for r in rows}
