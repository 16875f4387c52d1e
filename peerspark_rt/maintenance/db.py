"""SQL for the periodic clean-up."""

from __future__ import annotations

import datetime as dt

from ..infra.dbtypes import Executor


def _count(status: str) -> int:
    return int(status.split()[-1])


async def delete_expired_sessions(conn: Executor) -> int:
    """Login sessions whose refresh token has expired (their tokens can no longer be used)."""
    return _count(await conn.execute("DELETE FROM user_sessions WHERE expires_at < NOW()"))


async def expire_invitations(conn: Executor) -> int:
    return _count(
        await conn.execute(
            """UPDATE pod_invitations SET status = 'expired'
                WHERE status = 'pending' AND expires_at < NOW()"""
        )
    )


async def delete_old_deliveries(conn: Executor, before: dt.datetime) -> int:
    return _count(await conn.execute("DELETE FROM reminder_deliveries WHERE fired_at < $1", before))
