"""SQL for single-use account tokens (email links, sign-in tickets): only hashes are stored."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from ...infra.dbtypes import Executor


async def insert(
    conn: Executor,
    *,
    user_id: uuid.UUID,
    purpose: str,
    token_hash: str,
    email: str | None,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO account_tokens (user_id, purpose, token_hash, email, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        user_id,
        purpose,
        token_hash,
        email,
        expires_at,
    )


async def lock(conn: Executor, token_hash: str, purposes: tuple[str, ...]) -> asyncpg.Record | None:
    """The token row (locked: two uses at once are one use and one refusal)."""
    return await conn.fetchrow(
        """SELECT t.id, t.user_id, t.purpose, t.email, t.expires_at, t.used_at,
                  u.email AS account_email, u.account_status
             FROM account_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1 AND t.purpose = ANY($2::text[])
            FOR UPDATE OF t""",
        token_hash,
        list(purposes),
    )


async def mark_used(conn: Executor, token_id: uuid.UUID) -> None:
    await conn.execute("UPDATE account_tokens SET used_at = NOW() WHERE id = $1", token_id)


async def retire(conn: Executor, user_id: uuid.UUID, purposes: tuple[str, ...]) -> None:
    """Links of these purposes sent earlier stop working (a newer one, or the job is done)."""
    await conn.execute(
        """UPDATE account_tokens SET used_at = NOW()
            WHERE user_id = $1 AND purpose = ANY($2::text[]) AND used_at IS NULL""",
        user_id,
        list(purposes),
    )


async def purge_expired(conn: Executor) -> int:
    status = await conn.execute(
        "DELETE FROM account_tokens WHERE expires_at < NOW() - INTERVAL '1 day'"
    )
    return int(status.split()[-1])
