"""SQL for pods, memberships and invitations."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..infra import sql as sql_builder
from ..infra.dbtypes import Conn, Executor

POD_COLUMNS = """p.id, p.name, p.description, p.subject, p.category, p.difficulty_level,
    p.cover_image_url, p.is_public, p.max_members, p.current_member_count, p.creator_id, p.tags,
    p.rules, p.meeting_schedule, p.timezone, p.language, p.status, p.settings, p.created_at,
    p.updated_at"""

EDITABLE_COLUMNS = frozenset(
    {
        "name", "description", "subject", "category", "difficulty_level", "cover_image_url",
        "is_public", "max_members", "tags", "rules", "meeting_schedule", "timezone", "language",
        "settings",
    }
)  # fmt: skip


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


INSERT_COLUMNS = EDITABLE_COLUMNS | {"id", "creator_id", "current_member_count", "status"}
INVITATION_WRITABLE = frozenset(
    {"id", "pod_id", "inviter_id", "invitee_email", "invitee_id", "invitation_code", "message",
     "status", "expires_at"}
)  # fmt: skip


async def insert_pod(conn: Conn, values: dict[str, Any]) -> uuid.UUID:
    sql, args = sql_builder.insert("pods", values, INSERT_COLUMNS, suffix="RETURNING id")
    pod_id: uuid.UUID = await conn.fetchval(sql, *args)
    return pod_id


async def get_pod_for(db: Executor, pod_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    """The pod with the caller's membership (role, status) and whether they hold a live
    invitation; None if the pod does not exist."""
    return await db.fetchrow(
        f"""SELECT {POD_COLUMNS}, m.role AS my_role, m.status AS my_status,
                   EXISTS(
                     SELECT 1 FROM pod_invitations i JOIN users u ON u.id = $2
                     WHERE i.pod_id = p.id AND i.status = 'pending'
                       AND (i.expires_at IS NULL OR i.expires_at > NOW())
                       AND (i.invitee_id = $2 OR lower(i.invitee_email) = lower(u.email::text))
                   ) AS invited
            FROM pods p
            LEFT JOIN pod_memberships m ON m.pod_id = p.id AND m.user_id = $2
            WHERE p.id = $1""",  # noqa: S608 (composed of constants; values are parameters)
        pod_id,
        user_id,
    )


async def lock_pod(conn: Conn, pod_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, is_public, max_members, current_member_count, status, creator_id"
        " FROM pods WHERE id = $1 FOR UPDATE",
        pod_id,
    )


async def list_pods(
    db: Executor,
    user_id: uuid.UUID,
    *,
    search: str | None,
    subject: str | None,
    category: str | None,
    difficulty: str | None,
    is_public: bool | None,
    member_only: bool,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """Pods the caller may see (public ones and those they belong to), filtered, newest first
    or by relevance when searching. Each row carries `total` (the count before paging)."""
    pattern = _like_pattern(search) if search else None
    return await db.fetch(
        f"""SELECT {POD_COLUMNS}, m.role AS my_role, m.status AS my_status,
                   count(*) OVER () AS total
            FROM pods p
            LEFT JOIN pod_memberships m ON m.pod_id = p.id AND m.user_id = $1
            WHERE p.status = 'active'
              AND (p.is_public OR m.status = 'active')
              AND ($2::text IS NULL
                   OR p.name ILIKE $3 OR p.description ILIKE $3 OR p.subject ILIKE $3
                   OR lower($2) = ANY(p.tags) OR p.name % $2)
              AND ($4::text IS NULL OR lower(p.subject) = lower($4))
              AND ($5::text IS NULL OR p.category = $5)
              AND ($6::text IS NULL OR p.difficulty_level = $6)
              AND ($7::boolean IS NULL OR p.is_public = $7)
              AND (NOT $8 OR m.status = 'active')
            ORDER BY CASE WHEN $2::text IS NULL THEN 0
                          ELSE similarity(p.name, $2) END DESC,
                     p.created_at DESC, p.id
            LIMIT $9 OFFSET $10""",  # noqa: S608 (composed of constants; values are parameters)
        user_id,
        search,
        pattern,
        subject,
        category,
        difficulty,
        is_public,
        member_only,
        limit,
        offset,
    )


async def update_pod(conn: Conn, pod_id: uuid.UUID, changes: dict[str, Any]) -> None:
    sql, args = sql_builder.update(
        "pods",
        changes,
        EDITABLE_COLUMNS,
        where="id = $1",
        where_args=[pod_id],
        also="updated_at = NOW()",
    )
    await conn.execute(sql, *args)


async def delete_pod(conn: Conn, pod_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM pods WHERE id = $1", pod_id)


# --- memberships ---


async def get_membership(
    db: Executor, pod_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT id, role, status, joined_at FROM pod_memberships WHERE pod_id = $1 AND user_id = $2"  # noqa: S608 (composed of constants; values are parameters)
        + (" FOR UPDATE" if lock else ""),
        pod_id,
        user_id,
    )


async def upsert_active_membership(
    conn: Conn, pod_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO pod_memberships (pod_id, user_id, role, status)
           VALUES ($1, $2, $3, 'active')
           ON CONFLICT (pod_id, user_id) DO UPDATE
             SET role = EXCLUDED.role, status = 'active', joined_at = NOW(), last_active_at = NOW()
           RETURNING id, role, status, joined_at""",
        pod_id,
        user_id,
        role,
    )
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def set_membership(
    conn: Conn, pod_id: uuid.UUID, user_id: uuid.UUID, *, role: str, status: str
) -> None:
    await conn.execute(
        "UPDATE pod_memberships SET role = $3, status = $4 WHERE pod_id = $1 AND user_id = $2",
        pod_id,
        user_id,
        role,
        status,
    )


async def ban_membership(conn: Conn, pod_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO pod_memberships (pod_id, user_id, role, status)
           VALUES ($1, $2, 'member', 'banned')
           ON CONFLICT (pod_id, user_id) DO UPDATE SET role = 'member', status = 'banned'""",
        pod_id,
        user_id,
    )


async def delete_membership(conn: Conn, pod_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await conn.execute(
        "DELETE FROM pod_memberships WHERE pod_id = $1 AND user_id = $2", pod_id, user_id
    )


async def change_member_count(conn: Conn, pod_id: uuid.UUID, delta: int) -> int:
    count: int = await conn.fetchval(
        "UPDATE pods SET current_member_count = current_member_count + $2 WHERE id = $1"
        " RETURNING current_member_count",
        pod_id,
        delta,
    )
    return count


MEMBER_COLUMNS = """u.id AS user_id, u.username, u.first_name, u.last_name, u.avatar_url,
    m.role, m.status, m.joined_at, m.last_active_at, m.contribution_score"""


async def get_member(db: Executor, pod_id: uuid.UUID, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {MEMBER_COLUMNS} FROM pod_memberships m JOIN users u ON u.id = m.user_id
            WHERE m.pod_id = $1 AND m.user_id = $2""",  # noqa: S608 (composed of constants; values are parameters)
        pod_id,
        user_id,
    )


async def list_members(
    db: Executor, pod_id: uuid.UUID, *, include_banned: bool, limit: int, offset: int
) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {MEMBER_COLUMNS}, count(*) OVER () AS total
           FROM pod_memberships m JOIN users u ON u.id = m.user_id
           WHERE m.pod_id = $1 AND (m.status = 'active' OR ($2 AND m.status = 'banned'))
           ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1
                                WHEN 'moderator' THEN 2 ELSE 3 END,
                    m.joined_at, u.id
           LIMIT $3 OFFSET $4""",  # noqa: S608 (composed of constants; values are parameters)
        pod_id,
        include_banned,
        limit,
        offset,
    )


async def active_member_ids(
    db: Executor, pod_id: uuid.UUID, roles: tuple[str, ...]
) -> list[uuid.UUID]:
    rows = await db.fetch(
        "SELECT user_id FROM pod_memberships WHERE pod_id = $1 AND status = 'active'"
        " AND role = ANY($2::text[])",
        pod_id,
        list(roles),
    )
    return [r["user_id"] for r in rows]


# --- invitations ---


async def find_user_id_by_email(db: Executor, email: str) -> uuid.UUID | None:
    value: uuid.UUID | None = await db.fetchval("SELECT id FROM users WHERE email = $1", email)
    return value


async def get_user_brief(db: Executor, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT id, email, username FROM users WHERE id = $1", user_id)


INVITATION_COLUMNS = """id, pod_id, inviter_id, invitee_email, invitee_id, invitation_code, message,
    status, expires_at, created_at"""


async def pending_invitation_for(
    conn: Conn, pod_id: uuid.UUID, invitee_id: uuid.UUID | None, email: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {INVITATION_COLUMNS} FROM pod_invitations
            WHERE pod_id = $1 AND status = 'pending' AND (expires_at IS NULL OR expires_at > NOW())
              AND (($2::uuid IS NOT NULL AND invitee_id = $2)
                   OR ($3::text IS NOT NULL AND lower(invitee_email) = lower($3)))
            ORDER BY created_at DESC LIMIT 1 FOR UPDATE""",  # noqa: S608 (composed of constants; values are parameters)
        pod_id,
        invitee_id,
        email,
    )


async def invitation_by_code(conn: Conn, pod_id: uuid.UUID, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {INVITATION_COLUMNS} FROM pod_invitations
            WHERE pod_id = $1 AND invitation_code = $2 FOR UPDATE""",  # noqa: S608 (composed of constants; values are parameters)
        pod_id,
        code,
    )


async def pod_of_invitation(db: Executor, code: str) -> uuid.UUID | None:
    """The pod an invitation code is for (None: no such code)."""
    pod_id: uuid.UUID | None = await db.fetchval(
        "SELECT pod_id FROM pod_invitations WHERE invitation_code = $1", code
    )
    return pod_id


async def insert_invitation(conn: Conn, values: dict[str, Any]) -> asyncpg.Record:
    sql, args = sql_builder.insert(
        "pod_invitations", values, INVITATION_WRITABLE, suffix=f"RETURNING {INVITATION_COLUMNS}"
    )
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def mark_invitation(conn: Conn, invitation_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE pod_invitations SET status = $2 WHERE id = $1", invitation_id, status
    )
