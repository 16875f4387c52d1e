"""Achievements: criteria as data rows, progress, unlocking once (also under concurrent
events), the live frame and the notification, claiming once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from peerspark_rt.analytics.events import Kind
from tests.gamification import act, profile, settled
from tests.helpers import Api, listen_live, unique
from tests.social import post, resource


async def by_code(api: Api, user: Any) -> dict[str, dict[str, Any]]:
    resp = await api.get("/api/achievements", user)
    assert resp.status == 200, resp.body
    return {a["code"]: a for a in resp.body["achievements"]}


async def test_the_starter_set_with_progress(api: Api) -> None:
    ann = await api.register()
    listed = await by_code(api, ann)
    assert {"first_session", "streak_7", "focus_10h", "first_accepted_answer",
            "helpful_resource", "first_post"} <= set(listed)  # fmt: skip
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


async def test_unlocks_once_under_concurrent_events_live_and_as_a_notification(
    api: Api, db: asyncpg.Connection
) -> None:
    ann = await api.register()
    live = await listen_live(api, ann, f"user:{ann.id}")
    # five posts at once: each may complete "first post"; exactly one unlock wins
    results = await asyncio.gather(
        *(api.post("/api/posts", ann, json={"content": unique("at once ")}) for _ in range(5))
    )
    assert [r.status for r in results] == [201] * 5
    await settled(api)
    first_post = (await by_code(api, ann))["first_post"]
    assert first_post["unlocked"]
    assert first_post["unlockedAt"]
    rows = await db.fetch("SELECT * FROM user_achievements WHERE user_id = $1", uuid.UUID(ann.id))
    assert [r["achievement_id"] for r in rows] == [uuid.UUID(first_post["id"])]
    frame = await live.next("event", "achievement_unlocked")
    assert frame["data"]["achievementId"] == first_post["id"]
    assert frame["data"]["name"] == "First post"
    await live.nothing_more("event", "achievement_unlocked")
    notes = await api.get("/api/notifications", ann)
    kinds = [n["type"] for n in notes.body["notifications"]]
    assert kinds.count("achievement_unlocked") == 1
    assert (await profile(api, ann))["badgesEarned"] == 1


async def test_claiming_grants_the_points_once(api: Api) -> None:
    ann = await api.register()
    listed = await by_code(api, ann)
    first_post = listed["first_post"]
    # not unlocked yet: refused
    early = await api.post(f"/api/achievements/{first_post['id']}/claim", ann)
    assert (early.status, early.body["error"]["code"]) == (409, "not_unlocked")
    await post(api, ann, unique("my first "))
    await settled(api)
    before = (await profile(api, ann))["totalPoints"]
    claims = await asyncio.gather(
        *(api.post(f"/api/achievements/{first_post['id']}/claim", ann) for _ in range(3))
    )
    statuses = sorted(c.status for c in claims)
    assert statuses == [200, 409, 409]
    won = next(c for c in claims if c.status == 200)
    assert won.body["pointsAwarded"] == first_post["points"] == 5
    assert won.body["totalPoints"] == before + 5
    again = await api.post(f"/api/achievements/{first_post['id']}/claim", ann)
    assert (again.status, again.body["error"]["code"]) == (409, "already_claimed")
    assert (await profile(api, ann))["totalPoints"] == before + 5
    shown = await api.get(f"/api/achievements/{first_post['id']}", ann)
    assert shown.body["claimed"]
    assert shown.body["claimedAt"]
    assert (await api.post(f"/api/achievements/{uuid.uuid4()}/claim", ann)).status == 404


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
