"""The event API itself: one row per act, once per dedupe key, local days, spans, listeners."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from peerspark_rt.analytics.events import ANALYTICS, AnalyticsEvent, Kind, local_spans
from peerspark_rt.infra.aftercommit import unit
from peerspark_rt.infra.pool import DB
from tests.helpers import Api

UTC = dt.UTC


async def test_an_event_is_written_once_per_key_on_the_users_local_day_and_heard_after_commit(
    api: Api, db: asyncpg.Connection
) -> None:
    user = await api.register()
    assert (await api.patch("/api/auth/me", user, json={"timezone": "Asia/Tokyo"})).status == 200
    analytics, database = api.app[ANALYTICS], api.app[DB]
    heard: list[AnalyticsEvent] = []

    async def listener(event: AnalyticsEvent) -> None:
        heard.append(event)

    await analytics.drain()  # the sign-up's own events were announced before listening
    analytics.subscribe(listener)
    user_id = uuid.UUID(user.id)
    # 16:30 UTC is 01:30 the next day in Tokyo
    at = dt.datetime(2026, 3, 9, 16, 30, tzinfo=UTC)
    for _ in range(2):  # a retried act
        async with unit(database) as (conn, after):
            await analytics.record(
                conn, user_id, Kind.POST_CREATED, occurred_at=at, dedupe_key="p1", after=after
            )
    await analytics.drain()
    rows = await db.fetch(
        "SELECT local_date, local_hour FROM analytics_events WHERE user_id = $1 AND event = $2",
        user_id,
        "post_created",
    )
    assert [(r["local_date"], r["local_hour"]) for r in rows] == [(dt.date(2026, 3, 10), 1)]
    assert [(e.kind, e.local_date) for e in heard] == [(Kind.POST_CREATED, dt.date(2026, 3, 10))]

    # rolled back with its act: neither written nor heard
    try:
        async with unit(database) as (conn, after):
            await analytics.record(
                conn, user_id, Kind.AI_QUERY, occurred_at=at, dedupe_key="q1", after=after
            )
            raise RuntimeError("the act failed")
    except RuntimeError:
        pass
    await analytics.drain()
    assert (
        await db.fetchval(
            "SELECT count(*) FROM analytics_events WHERE user_id = $1 AND event = 'ai_query'",
            user_id,
        )
        == 0
    )
    assert len(heard) == 1


def test_time_is_cut_at_local_hours_across_midnight_and_a_dst_change() -> None:
    # Berlin leaves summer time at 03:00 local on 2026-10-25 (01:00 UTC): 02:00-03:00 twice
    start = dt.datetime(2026, 10, 24, 23, 40, tzinfo=UTC)  # 01:40 CEST
    end = dt.datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET
    spans = local_spans(start, end, "Europe/Berlin")
    day = dt.date(2026, 10, 25)
    assert spans == [(day, 1, 20 * 60), (day, 2, 70 * 60)]
    assert sum(s for _, _, s in spans) == (end - start).total_seconds()
    # Kolkata (+05:30): its hours begin on UTC half hours
    spans = local_spans(
        dt.datetime(2026, 1, 1, 18, 0, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 19, 0, tzinfo=UTC),
        "Asia/Kolkata",
    )
    assert spans == [(dt.date(2026, 1, 1), 23, 1800), (dt.date(2026, 1, 2), 0, 1800)]
