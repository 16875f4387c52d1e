"""Points from the table of acts (capped per day), levels, streaks and the profile, driven by
the analytics events, each applied exactly once (live, by the catch-up job, on retries)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from peerspark_rt.analytics.events import Kind
from peerspark_rt.gamification.engine import CATCH_UP_BATCH, GAMIFICATION, event_of
from peerspark_rt.gamification.rules import POINTS, level_view
from tests.gamification import act, catch_up, profile, settled
from tests.helpers import Api, User, unique
from tests.social import post


async def awards(db: asyncpg.Connection, user_id: str, kind: str) -> list[int]:
    rows = await db.fetch(
        "SELECT points FROM point_awards WHERE user_id = $1 AND kind = $2 ORDER BY id",
        uuid.UUID(user_id),
        kind,
    )
    return [r["points"] for r in rows]


async def test_acts_earn_their_points_up_to_the_daily_cap(api: Api, db: asyncpg.Connection) -> None:
    ann = await api.register()
    await settled(api)
    # signing up logs in: the day's login points
    assert await awards(db, ann.id, "login") == [POINTS["login"].points]
    for n in range(6):
        await post(api, ann, unique(f"Study note {n} "))
    await settled(api)
    # five posts reach the cap (50); the sixth earns nothing
    assert await awards(db, ann.id, "post_created") == [10, 10, 10, 10, 10, 0]
    # a second login the same day earns nothing either
    again = await api.post("/api/auth/login", json={"email": ann.email, "password": ann.password})
    assert again.status == 200
    await settled(api)
    assert await awards(db, ann.id, "login") == [5, 0]
    me = await profile(api, ann)
    view = level_view(55)
    assert me == {
        "level": view.level,
        "totalPoints": 55,
        "experiencePoints": view.experience_points,
        "nextLevelPoints": view.next_level_points,
        "studyStreak": 1,  # posting made today a study day
        "longestStreak": 1,
        "badgesEarned": 0,
        "rank": me["rank"],
        "streakFreezes": 0,
        "challengesCompleted": 0,
        "league": me["league"],
    }
    assert me["rank"] >= 1
    assert me["league"]["tierName"] == "Bronze"
    assert me["league"]["rank"] >= 1
    assert (await api.get("/api/gamification/profile")).status == 401


async def test_a_retried_act_earns_once(api: Api, db: asyncpg.Connection) -> None:
    ann = await api.register()
    pod = await api.create_pod(ann, isPublic=True)
    body = {
        "pendingActions": [
            {"clientActionId": "p1", "type": "create_post",
             "data": {"content": unique("offline "), "podId": pod["id"]}},
        ]
    }  # fmt: skip
    for _ in range(3):  # the phone did not hear the answer and sends it again
        resp = await api.post("/api/mobile/sync", ann, json=body)
        assert resp.status == 200, resp.body
    await settled(api)
    assert await awards(db, ann.id, "post_created") == [10]


async def test_the_catch_up_job_applies_what_the_listener_missed_once(
    api: Api, db: asyncpg.Connection
) -> None:
    ann = await api.register()
    await settled(api)
    before = (await profile(api, ann))["totalPoints"]
    # a node died between committing an act and announcing it: the row is there, unheard
    event_id = await db.fetchval(
        """INSERT INTO analytics_events (user_id, event, occurred_at, local_date, local_hour,
                                         dedupe_key, created_at)
           VALUES ($1, 'post_created', NOW(), CURRENT_DATE, 0, $2, NOW() - interval '1 minute')
           RETURNING id""",
        uuid.UUID(ann.id),
        unique("lost-"),
    )
    assert (await profile(api, ann))["totalPoints"] == before
    # (a job worker sharing this database may be the one that applies it: once either way)
    await catch_up(api)
    assert (await profile(api, ann))["totalPoints"] == before + 10
    # again, and the listener hearing of it late: nothing more
    await catch_up(api)
    full = await db.fetchrow("SELECT * FROM analytics_events WHERE id = $1", event_id)
    assert full is not None
    assert await api.app[GAMIFICATION].apply(event_of(full)) is False
    assert (await profile(api, ann))["totalPoints"] == before + 10
    assert len(await awards(db, ann.id, "post_created")) == 1


async def test_the_catch_up_job_reads_past_a_window_of_recent_events(
    api: Api, db: asyncpg.Connection
) -> None:
    """More events of the last minutes than one batch (all applied, none old enough to move
    the cursor past) do not hide a missed event after them."""
    ann, busy = await api.register(), await api.register()
    await settled(api)
    await catch_up(api)
    before = (await profile(api, ann))["totalPoints"]
    ids = await db.fetch(
        """INSERT INTO analytics_events (user_id, event, occurred_at, local_date, local_hour,
                                         dedupe_key, created_at)
           SELECT $1, 'post_created', NOW(), CURRENT_DATE, 0, $2 || g, NOW() - interval '2 minutes'
           FROM generate_series(1, $3) g RETURNING id""",
        uuid.UUID(busy.id),
        unique("busy-"),
        CATCH_UP_BATCH + 20,
    )
    await db.execute(  # (applied already, as the listener does)
        """INSERT INTO point_awards (user_id, source, source_key, kind, local_date, awarded_at)
           SELECT $1, 'event', i::text, 'post_created', CURRENT_DATE, NOW()
           FROM unnest($2::bigint[]) i""",
        uuid.UUID(busy.id),
        [r["id"] for r in ids],
    )
    await db.execute(
        """INSERT INTO analytics_events (user_id, event, occurred_at, local_date, local_hour,
                                         dedupe_key, created_at)
           VALUES ($1, 'post_created', NOW(), CURRENT_DATE, 0, $2, NOW() - interval '1 minute')""",
        uuid.UUID(ann.id),
        unique("lost-"),
    )
    await catch_up(api)
    assert (await profile(api, ann))["totalPoints"] == before + 10


async def test_study_minutes_points_and_the_streak_on_the_users_days(
    api: Api, db: asyncpg.Connection
) -> None:
    ann = await api.register()
    resp = await api.call("PATCH", "/api/auth/me", ann, json={"timezone": "Asia/Tokyo"})
    assert resp.status == 200, resp.body
    # 01:00 in Tokyo on three nights in a row (16:00 UTC the evening before)
    base = dt.datetime.now(dt.UTC).replace(hour=16, minute=0, second=0, microsecond=0)
    base -= dt.timedelta(days=3)
    for night in range(3):
        await act(api, ann, Kind.SESSION_LEFT, minutes=47, at=base + dt.timedelta(days=night),
                  session_id=uuid.uuid4())  # fmt: skip
    # 47 minutes: 9 points each (a point per 5 minutes)
    assert await awards(db, ann.id, "session_left") == [9, 9, 9]
    days = await db.fetch(
        "SELECT local_date FROM point_awards WHERE user_id = $1 AND kind = 'session_left'",
        uuid.UUID(ann.id),
    )
    tokyo = [(base + dt.timedelta(days=n, hours=9)).date() for n in range(3)]
    assert [r["local_date"] for r in days] == tokyo
    state = await db.fetchrow(
        "SELECT study_streak, longest_streak, last_study_date FROM user_gamification "
        "WHERE user_id = $1",
        uuid.UUID(ann.id),
    )
    assert state is not None
    assert (state["study_streak"], state["longest_streak"], state["last_study_date"]) == (
        3, 3, tokyo[-1],
    )  # fmt: skip
    # a session attended for no time is no study day
    await act(api, ann, Kind.SESSION_LEFT, minutes=0, session_id=uuid.uuid4())
    assert (await awards(db, ann.id, "session_left"))[-1] == 0


async def test_a_missed_day_spends_the_freeze_and_the_sweep_settles_lapsed_streaks(
    api: Api, db: asyncpg.Connection
) -> None:
    ann, bob = await api.register(), await api.register()
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    # ann studied the 7 days up to the day before yesterday: a 7-day streak and a freeze
    for back in range(8, 1, -1):
        await act(
            api, ann, Kind.FOCUS_BLOCK_COMPLETED, minutes=25, at=now - dt.timedelta(days=back)
        )
    # bob studied three days, up to three days ago
    for back in range(5, 2, -1):
        await act(
            api, bob, Kind.FOCUS_BLOCK_COMPLETED, minutes=25, at=now - dt.timedelta(days=back)
        )
    # yesterday was missed: ann's freeze covers it, bob's streak is over
    mine = await profile(api, ann)
    assert (mine["studyStreak"], mine["longestStreak"], mine["streakFreezes"]) == (7, 7, 0)
    theirs = await profile(api, bob)
    assert (theirs["studyStreak"], theirs["longestStreak"]) == (0, 3)

    async def stored(user: User) -> tuple[Any, ...]:
        row = await db.fetchrow(
            "SELECT study_streak, streak_freezes, last_study_date FROM user_gamification "
            "WHERE user_id = $1",
            uuid.UUID(user.id),
        )
        assert row is not None
        return tuple(row)

    assert await stored(ann) == (
        7, 1, today - dt.timedelta(days=2),
    )  # fmt: skip
    assert await api.app[GAMIFICATION].sweep_streaks() >= 2
    assert await stored(ann) == (
        7, 0, today - dt.timedelta(days=1),
    )  # fmt: skip
    assert (await stored(bob))[0] == 0
    # the streak board follows
    board = await api.get("/api/leaderboard", ann, params={"metric": "streak", "limit": "100"})
    assert board.body["me"]["score"] == 7
    assert bob.id not in [e["userId"] for e in board.body["entries"]]
    # studying today goes on from the freeze: 8 days
    await act(api, ann, Kind.FOCUS_BLOCK_COMPLETED, minutes=25)
    assert (await profile(api, ann))["studyStreak"] == 8
