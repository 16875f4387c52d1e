"""Helpers for the gamification tests: waiting for the engine, and recording the timed events
(minutes in a session, focus blocks) that would otherwise take real minutes of presence."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from peerspark_rt.analytics.events import ANALYTICS, Kind
from peerspark_rt.gamification.engine import GAMIFICATION
from peerspark_rt.infra.aftercommit import unit
from peerspark_rt.infra.pool import DB
from tests.helpers import Api, User


async def settled(api: Api) -> None:
    """Every event written so far has reached the engine (its listener ran)."""
    await api.app[ANALYTICS].drain(20)
    await api.app[GAMIFICATION].drain(20)


async def act(
    api: Api,
    user: User,
    kind: Kind,
    *,
    value: float | None = None,
    minutes: float | None = None,
    at: dt.datetime | None = None,
    session_id: uuid.UUID | None = None,
    pod_id: str | None = None,
    key: str | None = None,
) -> None:
    """Record one event as the product does for an act (in a transaction, announced after
    it), then wait for the engine. `minutes` makes a timed event of that length ending `at`."""
    end = at or dt.datetime.now(dt.UTC)
    started = end - dt.timedelta(minutes=minutes) if minutes is not None else None
    async with unit(api.app[DB]) as (conn, after):
        await api.app[ANALYTICS].record(
            conn,
            uuid.UUID(user.id),
            kind,
            occurred_at=end,
            after=after,
            value=minutes if minutes is not None else value,
            started_at=started,
            session_id=session_id,
            pod_id=uuid.UUID(pod_id) if pod_id else None,
            dedupe_key=key or secrets.token_hex(8),
        )
    await settled(api)


async def profile(api: Api, user: User) -> dict[str, Any]:
    resp = await api.get("/api/gamification/profile", user)
    assert resp.status == 200, resp.body
    result: dict[str, Any] = resp.body
    return result


async def catch_up(api: Api) -> int:
    """Run the catch-up job's work once."""
    result: int = await api.app[GAMIFICATION].catch_up()
    return result
