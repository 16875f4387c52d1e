"""SQL for sign-in with a provider: flows under way (oauth_states) and linked accounts."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from ...infra.dbtypes import Executor


async def insert_state(
    conn: Executor,
    *,
    state_hash: str,
    provider: str,
    code_verifier: str,
    nonce: str,
    link_user_id: uuid.UUID | None,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO oauth_states
             (state_hash, provider, code_verifier, nonce, link_user_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        state_hash,
        provider,
        code_verifier,
        nonce,
        link_user_id,
        expires_at,
    )


async def take_state(conn: Executor, state_hash: str) -> asyncpg.Record | None:
    """The flow of this state, removed as it is read: a state works once."""
    return await conn.fetchrow(
        """DELETE FROM oauth_states WHERE state_hash = $1
           RETURNING provider, code_verifier, nonce, link_user_id, expires_at""",
        state_hash,
    )


async def linked(conn: Executor, provider: str, subject: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT o.user_id, u.account_status FROM user_oauth_accounts o
             JOIN users u ON u.id = o.user_id
            WHERE o.provider = $1 AND o.provider_account_id = $2""",
        provider,
        subject,
    )


async def link(
    conn: Executor,
    *,
    user_id: uuid.UUID,
    provider: str,
    subject: str,
    email: str | None,
    email_verified: bool,
    scope: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO user_oauth_accounts
             (user_id, provider, provider_account_id, email, email_verified, scope, token_type)
           VALUES ($1, $2, $3, $4, $5, $6, 'Bearer')""",
        user_id,
        provider,
        subject,
        email,
        email_verified,
        scope,
    )


async def links_of(conn: Executor, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT provider, email, email_verified, created_at FROM user_oauth_accounts
            WHERE user_id = $1 ORDER BY provider""",
        user_id,
    )


async def unlink(conn: Executor, user_id: uuid.UUID, provider: str) -> bool:
    status = await conn.execute(
        "DELETE FROM user_oauth_accounts WHERE user_id = $1 AND provider = $2", user_id, provider
    )
    return not status.endswith(" 0")


async def user_for_email(conn: Executor, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, is_verified, account_status FROM users WHERE email = $1 FOR UPDATE", email
    )


async def username_taken(conn: Executor, username: str) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS(SELECT 1 FROM users WHERE username = $1)", username)
    )
