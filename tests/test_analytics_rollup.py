"""Daily study analytics: exactly what the events say, on the user's own days, kept current."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

from peerspark_rt.analytics.events import ANALYTICS, Analytics, Kind
from peerspark_rt.analytics.rollup import Rollups
from peerspark_rt.infra.aftercommit import unit
from peerspark_rt.infra.pool import DB
from tests.helpers import Api, User, unique

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2030, 4, day, hour, minute, tzinfo=UTC)


async def record(api: Api, user: User, kind: Kind, when: dt.datetime, **fields: Any) -> None:
    analytics: Analytics = api.app[ANALYTICS]
    async with unit(api.app[DB]) as (conn, after):
        await analytics.record(
            conn, uuid.UUID(user.id), kind, occurred_at=when, after=after,
            dedupe_key=fields.pop("key", unique("k")), **fields,
        )  # fmt: skip


async def recomputed(db: asyncpg.Connection, user_id: uuid.UUID) -> dict[dt.date, dict[str, Any]]:
    """A user's days, computed here from the event log by the rules in README."""
    days: dict[dt.date, dict[str, Any]] = defaultdict(
        lambda: {
            "events": 0, "posts_created": 0, "comments_made": 0, "comments_received": 0,
            "likes_received": 0, "messages_sent": 0, "ai_queries_made": 0,
            "focus_blocks_completed": 0, "focus_blocks_abandoned": 0, "resources": set(),
            "pods": set(), "study_seconds": 0, "sessions": set(), "hourly": [0] * 24,
            "subjects": defaultdict(int),
        }
    )  # fmt: skip
    counted = {
        "post_created": "posts_created", "comment_created": "comments_made",
        "comment_received": "comments_received", "like_received": "likes_received",
        "message_sent": "messages_sent", "ai_query": "ai_queries_made",
        "focus_block_completed": "focus_blocks_completed",
        "focus_block_abandoned": "focus_blocks_abandoned",
    }  # fmt: skip
    for e in await db.fetch(
        "SELECT event, local_date, pod_id, properties FROM analytics_events WHERE user_id = $1",
        user_id,
    ):
        day = days[e["local_date"]]
        day["events"] += 1
        if e["event"] in counted:
            day[counted[e["event"]]] += 1
        if e["event"] in ("resource_viewed", "resource_downloaded"):
            day["resources"].add(json.loads(e["properties"])["resourceId"])
        if e["pod_id"] is not None:
            day["pods"].add(str(e["pod_id"]))
    for s in await db.fetch(
        """SELECT sp.local_date, sp.local_hour, sp.seconds, sp.subject, e.event, e.session_id
           FROM analytics_spans sp JOIN analytics_events e ON e.id = sp.event_id
           WHERE sp.user_id = $1""",
        user_id,
    ):
        if s["event"] == "focus_block_completed" and s["session_id"] is not None:
            continue  # inside the session's attendance
        day = days[s["local_date"]]
        day["study_seconds"] += s["seconds"]
        day["hourly"][s["local_hour"]] += s["seconds"]
        if s["event"] == "session_left":
            day["sessions"].add(s["session_id"])
        if s["subject"]:
            day["subjects"][s["subject"]] += s["seconds"]
    out: dict[dt.date, dict[str, Any]] = {}
    streak = 0
    previous: dt.date | None = None
    for date in sorted(days):
        d = days[date]
        if previous != date - dt.timedelta(days=1):
            streak = 0
        streak = streak + 1 if d["study_seconds"] > 0 else 0
        previous = date
        blocks = d["focus_blocks_completed"] + d["focus_blocks_abandoned"]
        out[date] = {
            **{k: d[k] for k in (*counted.values(), "events", "study_seconds")},
            "study_time_minutes": d["study_seconds"] // 60,
            "sessions_completed": len(d["sessions"]),
            "resources_accessed": len(d["resources"]),
            "pods_active": sorted(d["pods"]),
            "hourly_seconds": d["hourly"],
            "subject_seconds": dict(d["subjects"]),
            "subjects_studied": sorted(d["subjects"]),
            "focus_score": (
                round(100 * d["focus_blocks_completed"] / blocks, 2) if blocks else None
            ),
            "streak_days": streak,
        }
    return out


async def stored(db: asyncpg.Connection, user_id: uuid.UUID) -> dict[dt.date, dict[str, Any]]:
    rows = await db.fetch("SELECT * FROM study_analytics WHERE user_id = $1", user_id)
    out = {}
    for r in rows:
        row = dict(r)
        row["pods_active"] = sorted(row["pods_active"])
        row["subject_seconds"] = json.loads(row["subject_seconds"])
        row["focus_score"] = None if row["focus_score"] is None else float(row["focus_score"])
        out[r["date"]] = row
    return out


async def assert_exact(db: asyncpg.Connection, user: User) -> dict[dt.date, dict[str, Any]]:
    user_id = uuid.UUID(user.id)
    want, got = await recomputed(db, user_id), await stored(db, user_id)
    assert sorted(got) == sorted(want)
    for day, expected in want.items():
        assert {k: got[day][k] for k in expected} == expected, day
    return got


async def test_rollups_equal_a_recomputation_from_the_events_in_the_users_zone(
    api: Api, db: asyncpg.Connection
) -> None:
    ann = await api.register()
    assert (await api.patch("/api/auth/me", ann, json={"timezone": "Asia/Tokyo"})).status == 200
    pod = uuid.UUID((await api.create_pod(ann))["id"])
    session = uuid.uuid4()
    rollups = Rollups(api.app[DB])
    # 16:00 UTC on the 1st is 01:00 on the 2nd in Tokyo
    await record(api, ann, Kind.POST_CREATED, at(1, 16), pod_id=pod)
    await record(api, ann, Kind.MESSAGE_SENT, at(1, 14), pod_id=pod, session_id=session)
    # attendance from 22:30 to 01:30 Tokyo time: 90 minutes on each local day
    await record(
        api, ann, Kind.SESSION_LEFT, at(2, 16, 30), started_at=at(2, 13, 30),
        session_id=session, pod_id=pod, value=180.0, subject="Physics",
    )  # fmt: skip
    await record(api, ann, Kind.FOCUS_BLOCK_COMPLETED, at(3, 1), started_at=at(3, 0, 35))
    await record(api, ann, Kind.FOCUS_BLOCK_ABANDONED, at(3, 2), value=10.0)
    # a focus block inside a session room is already in the attendance
    await record(
        api, ann, Kind.FOCUS_BLOCK_COMPLETED, at(2, 14), started_at=at(2, 13, 35),
        session_id=session,
    )  # fmt: skip
    for hour, resource in ((3, "r1"), (4, "r1"), (5, "r2")):
        await record(api, ann, Kind.RESOURCE_VIEWED, at(3, hour), meta={"resourceId": resource})
    await record(api, ann, Kind.LIKE_RECEIVED, at(3, 6))
    await record(api, ann, Kind.AI_QUERY, at(3, 7), value=120.0)
    await rollups.catch_up()
    got = await assert_exact(db, ann)
    tokyo = dt.date(2030, 4, 3)
    assert got[dt.date(2030, 4, 2)]["posts_created"] == 1  # 01:00 local counts on the 2nd
    assert got[dt.date(2030, 4, 1)]["messages_sent"] == 1  # 23:00 local on the 1st
    assert got[tokyo]["study_time_minutes"] == 90 + 25  # the session after midnight + solo
    assert got[tokyo]["subject_seconds"] == {"Physics": 90 * 60}
    assert got[tokyo]["hourly_seconds"][:2] == [3600, 1800]  # 00:00-01:30 local
    assert got[tokyo]["hourly_seconds"][9] == 25 * 60  # the solo block, 09:35-10:00
    assert got[tokyo]["focus_score"] == 50.0
    assert got[tokyo]["resources_accessed"] == 2
    april = [dt.date(2030, 4, d) for d in (1, 2, 3)]  # (and today's row: the sign-up)
    assert [got[d]["streak_days"] for d in april] == [0, 1, 2]
    # a late event (a phone's offline session on the 1st) corrects that day and carries the
    # streak forward
    await record(api, ann, Kind.SESSION_LEFT, at(1, 10), started_at=at(1, 9), session_id=session)
    await rollups.catch_up()
    got = await assert_exact(db, ann)
    assert [got[d]["streak_days"] for d in april] == [1, 2, 3]
    # recomputing changes nothing
    async with api.app[DB].transaction() as conn:
        await conn.execute("INSERT INTO analytics_dirty (user_id, day) VALUES ($1, $2)",
                           uuid.UUID(ann.id), tokyo)  # fmt: skip
    await rollups.catch_up()
    again = await assert_exact(db, ann)
    assert {d: {k: v for k, v in row.items() if k != "updated_at"} for d, row in again.items()} == {
        d: {k: v for k, v in row.items() if k != "updated_at"} for d, row in got.items()
    }


async def test_todays_row_is_kept_current_by_the_worker(
    make_client: Any, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(run_worker=True, analytics_rollup_interval=1.0)
    bo = await api.register()
    assert (await api.patch("/api/auth/me", bo, json={"timezone": "Asia/Tokyo"})).status == 200
    resp = await api.post("/api/posts", bo, json={"content": unique("Studying now ")})
    assert resp.status == 201
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()
    for _ in range(100):
        row = await db.fetchrow(
            "SELECT posts_created FROM study_analytics WHERE user_id = $1 AND date = $2",
            uuid.UUID(bo.id),
            today,
        )
        if row is not None and row["posts_created"] == 1:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("today's row was not rolled up")
