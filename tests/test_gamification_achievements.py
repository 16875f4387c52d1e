"""Achievements: criteria as data rows, progress, unlocking once (also under concurrent
events), the live frame and the notification, claiming once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from peerspark_rt.analytics.events import Kind
from tests.gamification import act, profile, settled
from tests.helpers import Api, User, listen_live, unique
from tests.social import post, resource


async def by_code(api: Api, user: Any) -> dict[str, dict[str, Any]]:
    resp = await api.get("/api/achievements", user)
    assert resp.status == 200, resp.body
    return {a["code"]: a for a in resp.body["achievements"]}


async def test_the_starter_set_with_progress(api: Api) -> None:
    ann = await api.register()
    listed = await by_code(api, ann)
    assert {"first_session", "streak_7", "focus_10h", "first_accepted_answer",
            "helpful_resource", "level_5"} <= set(listed)  # fmt: skip
    focus = listed["focus_10h"]
    assert focus["criteria"] == {"metric": "focus_minutes", "gte": 600}
    assert focus["progress"] == {"current": 0.0, "target": 600.0, "percent": 0.0}
    assert not focus["unlocked"]
    assert not focus["claimed"]
    for _ in range(3):
        await act(api, ann, Kind.FOCUS_BLOCK_COMPLETED, minutes=25, session_id=uuid.uuid4())
    one = await api.get(f"/api/achievements/{focus['id']}", ann)
    assert one.status == 200
    assert one.body["progress"] == {"current": 75.0, "target": 600.0, "percent": 12.5}
    # unknown and malformed ids
    assert (await api.get(f"/api/achievements/{uuid.uuid4()}", ann)).status == 404
    assert (await api.get("/api/achievements/nope", ann)).status == 404
    assert (await api.get("/api/achievements")).status == 401


async def answers(api: Api, asker: User, helper: User, n: int) -> list[tuple[str, str]]:
    """`n` questions of the asker's, each answered by the helper: (post id, comment id)."""
    pod = await api.create_pod(asker, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", helper, json={})).status == 200
    out = []
    for k in range(n):
        question = await post(api, asker, unique(f"Question {k}? "), podId=pod["id"],
                              postType="question")  # fmt: skip
        reply = await api.post(
            f"/api/posts/{question['id']}/comments", helper, json={"content": unique("Try ")}
        )
        assert reply.status == 201, reply.body
        out.append((question["id"], reply.body["id"]))
    return out


async def accept(api: Api, asker: User, question: str, comment: str) -> None:
    resp = await api.post(
        f"/api/posts/{question}/accepted-answer", asker, json={"commentId": comment}
    )
    assert resp.status == 200, resp.body


async def test_unlocks_once_under_concurrent_events_live_and_as_a_notification(
    api: Api, db: asyncpg.Connection
) -> None:
    asker, helper = await api.register(), await api.register()
    pairs = await answers(api, asker, helper, 5)
    await settled(api)
    live = await listen_live(api, helper, f"user:{helper.id}")
    # five answers accepted at once: each may complete "first accepted answer"; one unlock wins
    await asyncio.gather(*(accept(api, asker, q, c) for q, c in pairs))
    await settled(api)
    badge = (await by_code(api, helper))["first_accepted_answer"]
    assert badge["unlocked"]
    assert badge["unlockedAt"]
    rows = await db.fetch(
        "SELECT * FROM user_achievements WHERE user_id = $1", uuid.UUID(helper.id)
    )
    assert [r["achievement_id"] for r in rows] == [uuid.UUID(badge["id"])]
    frame = await live.next("event", "achievement_unlocked")
    assert frame["data"]["achievementId"] == badge["id"]
    assert frame["data"]["name"] == "Helping hand"
    await live.nothing_more("event", "achievement_unlocked")
    notes = await api.get("/api/notifications", helper)
    kinds = [n["type"] for n in notes.body["notifications"]]
    assert kinds.count("achievement") == 1
    assert (await profile(api, helper))["badgesEarned"] == 1


async def test_claiming_grants_the_points_once(api: Api) -> None:
    asker, helper = await api.register(), await api.register()
    badge = (await by_code(api, helper))["first_accepted_answer"]
    # not unlocked yet: refused
    early = await api.post(f"/api/achievements/{badge['id']}/claim", helper)
    assert (early.status, early.body["error"]["code"]) == (409, "not_unlocked")
    [(question, comment)] = await answers(api, asker, helper, 1)
    await accept(api, asker, question, comment)
    await settled(api)
    before = (await profile(api, helper))["totalPoints"]
    claims = await asyncio.gather(
        *(api.post(f"/api/achievements/{badge['id']}/claim", helper) for _ in range(3))
    )
    statuses = sorted(c.status for c in claims)
    assert statuses == [200, 409, 409]
    won = next(c for c in claims if c.status == 200)
    assert won.body["pointsAwarded"] == badge["points"] == 25
    assert won.body["totalPoints"] == before + 25
    again = await api.post(f"/api/achievements/{badge['id']}/claim", helper)
    assert (again.status, again.body["error"]["code"]) == (409, "already_claimed")
    assert (await profile(api, helper))["totalPoints"] == before + 25
    shown = await api.get(f"/api/achievements/{badge['id']}", helper)
    assert shown.body["claimed"]
    assert shown.body["claimedAt"]
    assert (await api.post(f"/api/achievements/{uuid.uuid4()}/claim", helper)).status == 404


async def test_a_session_counts_as_attended_after_five_minutes(api: Api) -> None:
    ann = await api.register()
    await act(api, ann, Kind.SESSION_LEFT, minutes=3, session_id=uuid.uuid4())
    first = (await by_code(api, ann))["first_session"]
    assert not first["unlocked"]
    assert first["progress"]["current"] == 0
    await act(api, ann, Kind.SESSION_LEFT, minutes=6, session_id=uuid.uuid4())
    assert (await by_code(api, ann))["first_session"]["unlocked"]


async def test_a_resource_rated_well_by_five_people_earns_its_owner_the_badge(
    api: Api, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    pod = await api.create_pod(owner, isPublic=True)
    notes = await resource(api, owner, "Great notes", podId=pod["id"], isPublic=True)
    live = await listen_live(api, owner, f"user:{owner.id}")
    raters = [await api.register() for _ in range(5)]
    for n, rater in enumerate(raters):
        await api.post(f"/api/pods/{pod['id']}/join", rater, json={})
        rating = 4 if n == 0 else 5  # 4.8 on average
        resp = await api.post(f"/api/resources/{notes['id']}/rate", rater, json={"rating": rating})
        assert resp.status == 201, resp.body
        await settled(api)
        helpful = (await by_code(api, owner))["helpful_resource"]
        assert helpful["unlocked"] == (n == 4), n
    frame = await live.next("event", "achievement_unlocked")
    assert frame["data"]["code"] == "helpful_resource"
