"""A student's dashboards on their own days, and what platform admins see."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import asyncpg

from peerspark_rt import protocol
from peerspark_rt.analytics.events import ANALYTICS, Kind
from peerspark_rt.analytics.rollup import Rollups
from peerspark_rt.gamification.engine import GAMIFICATION
from peerspark_rt.infra.aftercommit import unit
from peerspark_rt.infra.pool import DB
from tests.helpers import Api, User, frame_of, open_session, unique

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


async def record(api: Api, user: User, kind: Kind, when: dt.datetime, **fields: Any) -> None:
    async with unit(api.app[DB]) as (conn, after):
        await api.app[ANALYTICS].record(
            conn, uuid.UUID(user.id), kind, occurred_at=when, after=after,
            dedupe_key=unique("k"), **fields,
        )  # fmt: skip


async def studied(api: Api, user: User, day: dt.date, hour: int, minutes: int, **kw: Any) -> None:
    """`minutes` of solo focus ending at `hour`:00 on the Tokyo `day`."""
    end = dt.datetime(day.year, day.month, day.day, hour, tzinfo=TOKYO)
    start = end - dt.timedelta(minutes=minutes)
    await record(api, user, Kind.FOCUS_BLOCK_COMPLETED, end, started_at=start, **kw)


async def admin(api: Api, db: asyncpg.Connection) -> User:
    user = await api.register()
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(user.id))
    again = await api.post("/api/auth/login", json={"email": user.email, "password": user.password})
    user.token = again.body["accessToken"]  # (the role rides in the token)
    return user


async def test_the_dashboard_and_study_patterns_on_the_students_days(
    api: Api, db: asyncpg.Connection
) -> None:
    ann = await api.register()
    assert (await api.patch("/api/auth/me", ann, json={"timezone": "Asia/Tokyo"})).status == 200
    today = dt.datetime.now(TOKYO).date()
    yesterday, last_week = today - dt.timedelta(days=1), today - dt.timedelta(days=8)
    await studied(api, ann, today, 9, 30)  # 08:30-09:00
    await record(api, ann, Kind.FOCUS_BLOCK_ABANDONED, dt.datetime.now(dt.UTC))
    await studied(api, ann, yesterday, 21, 60)
    await studied(api, ann, last_week, 21, 45)
    midnight = dt.datetime(today.year, today.month, today.day, tzinfo=TOKYO)
    await record(
        api, ann, Kind.SESSION_LEFT, midnight + dt.timedelta(hours=1), started_at=midnight,
        session_id=uuid.uuid4(), subject="Physics", value=60.0,
    )  # fmt: skip
    await record(api, ann, Kind.LIKE_RECEIVED, dt.datetime.now(dt.UTC))
    await record(api, ann, Kind.POST_CREATED, dt.datetime.now(dt.UTC))
    await open_session(api, ann)  # one session ahead
    badge, later = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        """INSERT INTO achievements (id, name, criteria, points, is_active)
           VALUES ($1, $3, '{}', 1, TRUE), ($2, $4, '{}', 2, TRUE)""",
        badge, later, unique("First steps "), unique("Next step "),
    )  # fmt: skip
    await db.execute(
        "INSERT INTO user_achievements (user_id, achievement_id) VALUES ($1, $2)",
        uuid.UUID(ann.id),
        badge,
    )
    await Rollups(api.app[DB]).catch_up()
    await api.app[ANALYTICS].drain(20)  # the gamification engine has heard every event
    await api.app[GAMIFICATION].drain(20)  # ... and applied it

    resp = await api.get("/api/analytics/dashboard", ann)
    assert resp.status == 200, resp.body
    body = resp.body
    assert (body["timezone"], body["today"]) == ("Asia/Tokyo", today.isoformat())
    week_start = today - dt.timedelta(days=today.weekday())
    minutes = {today: 90, yesterday: 60, last_week: 45}
    assert body["studyTime"] == {
        "today": 90,
        "thisWeek": sum(m for d, m in minutes.items() if d >= week_start),
        "thisMonth": sum(m for d, m in minutes.items() if d >= today.replace(day=1)),
        # the last 7 days (150) over the 7 before (45)
        "trend": round(100 * (150 - 45) / 45, 1),
    }
    assert body["sessions"]["scheduled"] == 1
    assert body["social"] == {"postsCreated": 1, "commentsReceived": 0, "likesReceived": 1}
    assert body["focusScore"] == 66.67  # 2 blocks completed, 1 abandoned in 7 days
    achievements = body["achievements"]
    # the badge given above, and the one the hour in the session earned (gamification)
    first_session = await db.fetchval("SELECT id FROM achievements WHERE code = 'first_session'")
    assert achievements["totalEarned"] == 2
    assert {b["id"] for b in achievements["recentBadges"]} == {str(badge), str(first_session)}
    assert achievements["nextMilestone"]["points"] <= 2  # the cheapest one not earned

    patterns = (await api.get("/api/analytics/study-patterns?days=7", ann)).body
    assert [d["date"] for d in patterns["dailyHours"]][-1] == today.isoformat()
    assert len(patterns["dailyHours"]) == 7
    assert patterns["dailyHours"][-1]["hours"] == 1.5
    assert patterns["dailyHours"][-2]["hours"] == 1.0
    # 150 minutes: 60 of Physics, 90 of no subject
    assert patterns["subjectDistribution"] == [
        {"subject": "Unspecified", "hours": 1.5, "percentage": 60.0},
        {"subject": "Physics", "hours": 1.0, "percentage": 40.0},
    ]
    hours = {h["hour"]: h["productivity"] for h in patterns["productiveHours"]}
    assert (len(hours), hours[0], hours[8], hours[20]) == (24, 40.0, 20.0, 40.0)
    assert [s["score"] for s in patterns["focusScores"]] == [100.0, 50.0]
    assert sum(d["productivity"] for d in patterns["productiveDays"]) == 100.0
    bad = await api.get("/api/analytics/study-patterns?days=0", ann)
    assert (bad.status, bad.error_field()) == (422, "days")
    assert (await api.get("/api/analytics/dashboard")).status == 401


async def test_platform_metrics_are_for_admins(api: Api, db: asyncpg.Connection) -> None:
    boss, student = await admin(api, db), await api.register()
    assert (await api.get("/api/admin/metrics", student)).status == 403
    week = await api.get("/api/admin/metrics?timeframe=week", boss)
    assert week.status == 200, week.body
    body = week.body
    assert len(body["dailyBreakdown"]) == 7
    assert body["dailyBreakdown"][-1]["date"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert body["totals"]["newUsers"] >= 2
    assert body["totals"]["events"] == sum(
        sum(d["events"].values()) for d in body["dailyBreakdown"]
    )
    # (sign-ups of the window, accounts deleted since included; accounts that exist now)
    assert body["totals"]["totalUsers"] >= 2
    again = await api.get("/api/admin/metrics?timeframe=week", boss)
    assert again.body["generatedAt"] == body["generatedAt"]  # from the cache
    bad = await api.get("/api/admin/metrics?timeframe=year", boss)
    assert (bad.status, bad.error_field()) == (422, "timeframe")


async def test_the_admin_room_streams_live_counters_to_admins_only(
    make_client: Any, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(admin_dashboard_interval=0.2)
    boss, student = await admin(api, db), await api.register()
    nosy = await api.live(student)
    await nosy.send_raw('{"t": "join", "room": "admin:dashboard"}')
    refused = await frame_of(nosy, protocol.Error)
    assert (refused.code, refused.room) == ("not_admin", "admin:dashboard")
    watch = await api.live(boss)
    await watch.join("admin:dashboard")
    await api.post("/api/posts", student, json={"content": unique("Live counters ")})
    for _ in range(50):
        frame = await frame_of(watch, protocol.Event, 5, kind="metrics")
        if frame.data["eventsPerMinute"].get("post_created", 0) >= 1:
            break
    else:
        raise AssertionError("the post never showed in the counters")
    assert frame.data["usersOnline"] == 2  # the two sockets' users on this (only) node
    assert frame.data["nodes"] == 1
    assert frame.data["eventsLastMinute"] >= 1
