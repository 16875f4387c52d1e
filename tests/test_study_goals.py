"""Weekly study goals: progress from real events (card reviews and their time, presence in a
live session), validation, and the weekly reminder through the notification preferences."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg

from peerspark_rt.study.goals import GOALS
from tests.helpers import Api, User, open_session


async def spans_seconds(db: asyncpg.Connection, user: User) -> int:
    total = await db.fetchval(
        "SELECT coalesce(sum(seconds), 0) FROM analytics_spans WHERE user_id = $1",
        uuid.UUID(user.id),
    )
    return int(total)


async def attended(db: asyncpg.Connection, user: User) -> None:
    for _ in range(100):
        n = await db.fetchval(
            """SELECT count(*) FROM analytics_events
               WHERE user_id = $1 AND event = 'session_left'""",
            uuid.UUID(user.id),
        )
        if n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session was never left")


async def test_progress_comes_from_reviews_and_sessions(api: Api, db: asyncpg.Connection) -> None:
    me, host = await api.register(), await api.register()
    empty = await api.get("/api/study/goals", me)
    assert empty.status == 200
    assert empty.body["cards"] == {"goal": 0, "done": 0, "percent": 100}
    resp = await api.put(
        "/api/study/goals",
        me,
        json={"minutesPerWeek": 60, "cardsPerWeek": 4, "sessionsPerWeek": 2},
    )
    assert resp.status == 200, resp.body
    monday = dt.date.fromisoformat(resp.body["weekStart"])
    assert monday.weekday() == 0
    assert resp.body["weekEnd"] == (monday + dt.timedelta(days=6)).isoformat()
    deck = (await api.post("/api/decks", me, json={"title": "Goals"})).body
    card = (
        await api.post(f"/api/decks/{deck['id']}/cards", me, json={"front": "a", "back": "b"})
    ).body["id"]
    for i in range(3):
        body = {"cardId": card, "rating": "good", "clientReviewId": f"g{i}", "durationMs": 50_000}
        assert (await api.post("/api/study/reviews", me, json=body)).status == 200
    # a duplicate sync adds nothing
    body = {"cardId": card, "rating": "good", "clientReviewId": "g0", "durationMs": 50_000}
    await api.post("/api/study/reviews", me, json=body)
    room = await open_session(api, host, me)
    live = await api.live(me)
    await live.join(room)
    await asyncio.sleep(1.2)
    await live.leave(room)
    await attended(db, me)
    goals = (await api.get("/api/study/goals", me)).body
    assert goals["cards"] == {"goal": 4, "done": 3, "percent": 75}
    assert goals["sessions"] == {"goal": 2, "done": 1, "percent": 50}
    minutes = (await spans_seconds(db, me) + 150) // 60
    assert goals["minutes"]["done"] == minutes
    assert minutes >= 2
    for body, field in (
        ({"minutesPerWeek": -1}, "minutesPerWeek"),
        ({"cardsPerWeek": 100_001}, "cardsPerWeek"),
        ({"sessionsPerWeek": 5000}, "sessionsPerWeek"),
        ({"hoursPerWeek": 1}, "hoursPerWeek"),
    ):
        bad = await api.put("/api/study/goals", me, json=body)
        assert (bad.status, bad.error_field()) == (422, field), bad.body


async def test_a_week_behind_its_pace_is_reminded_once(api: Api) -> None:
    behind, ahead, quiet = await api.register(), await api.register(), await api.register()
    await api.put("/api/study/goals", behind, json={"cardsPerWeek": 100})
    await api.put("/api/study/goals", ahead, json={"cardsPerWeek": 1})
    await api.put("/api/study/goals", quiet, json={"cardsPerWeek": 100, "reminders": False})
    deck = (await api.post("/api/decks", ahead, json={"title": "x"})).body
    card = (
        await api.post(f"/api/decks/{deck['id']}/cards", ahead, json={"front": "a", "back": "b"})
    ).body["id"]
    body = {"cardId": card, "rating": "good", "clientReviewId": "r1"}
    assert (await api.post("/api/study/reviews", ahead, json=body)).status == 200
    today = dt.datetime.now(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday())
    goals = api.app[GOALS]
    wednesday = dt.datetime.combine(monday + dt.timedelta(days=2), dt.time(20), dt.UTC)
    thursday = dt.datetime.combine(monday + dt.timedelta(days=3), dt.time(19), dt.UTC)
    assert await goals.remind(now=wednesday) == 0  # too early in the week
    await goals.remind(now=thursday)
    await goals.remind(now=thursday + dt.timedelta(hours=1))  # once a week

    async def reminders(user: User) -> list[dict[str, object]]:
        resp = await api.get("/api/notifications", user)
        assert resp.status == 200, resp.body
        return [n for n in resp.body["notifications"] if n["type"] == "study_goal"]

    got = await reminders(behind)
    assert len(got) == 1
    assert "0/100 cards" in str(got[0]["message"])
    assert await reminders(ahead) == []
    assert await reminders(quiet) == []
