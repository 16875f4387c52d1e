"""Challenges: who may create them (validation), joining and leaving, progress from events,
completion in order, the reward paid once; a pod's challenges for its members only."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from tests.gamification import profile, settled
from tests.helpers import Api, User, listen_live, unique
from tests.social import invite_and_join, post


async def admin(api: Api, db: asyncpg.Connection) -> User:
    user = await api.register()
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(user.id))
    resp = await api.post("/api/auth/login", json={"email": user.email, "password": user.password})
    assert resp.status == 200, resp.body
    user.token = resp.body["accessToken"]
    return user


def challenge(**fields: Any) -> dict[str, Any]:
    return {
        "title": unique("Write posts "),
        "challengeType": "daily",
        "criteria": {"metric": "posts_created", "target": 2},
        "rewardPoints": 30,
        **fields,
    }


async def test_who_may_create_and_what_is_refused(api: Api, db: asyncpg.Connection) -> None:
    boss = await admin(api, db)
    ann, bob, outsider = await api.register(), await api.register(), await api.register()
    made = await api.post("/api/challenges", boss, json=challenge())
    assert made.status == 201, made.body
    assert made.body["isGlobal"]
    assert made.body["status"] == "active"
    assert made.body["me"] is None
    start = dt.datetime.fromisoformat(made.body["startDate"])
    end = dt.datetime.fromisoformat(made.body["endDate"])
    assert end - start == dt.timedelta(days=1)
    # only platform admins make global ones
    refused = await api.post("/api/challenges", ann, json=challenge())
    assert (refused.status, refused.body["error"]["code"]) == (403, "not_admin")
    # a pod's admins make the pod's; members may not; outsiders do not see a private pod
    pod = await api.create_pod(ann, isPublic=False)
    await invite_and_join(api, ann, bob, pod)
    assert (await api.post("/api/challenges", ann, json=challenge(podId=pod["id"]))).status == 201
    member = await api.post("/api/challenges", bob, json=challenge(podId=pod["id"]))
    assert member.status == 403
    hidden = await api.post("/api/challenges", outsider, json=challenge(podId=pod["id"]))
    assert hidden.status == 404
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    bad = [
        (challenge(title=" "), "title"),
        (challenge(criteria={"metric": "karma", "target": 2}), "criteria.metric"),
        (challenge(criteria={"metric": "points", "target": 0}), "criteria.target"),
        (challenge(rewardPoints=-1), "rewardPoints"),
        (challenge(challengeType="special"), "endDate"),
        (challenge(challengeType="yearly"), "challengeType"),
        (challenge(endDate=past), "endDate"),
        (challenge(startDate=soon, endDate=soon), "endDate"),
        (challenge(maxParticipants=0), "maxParticipants"),
        (challenge(surprise=True), "surprise"),
    ]
    in_an_hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    later = await api.post("/api/challenges", boss, json=challenge(startDate=in_an_hour))
    assert (later.status, later.body["status"]) == (201, "upcoming")
    for body, field in bad:
        resp = await api.post("/api/challenges", boss, json=body)
        assert (resp.status, resp.error_field()) == (422, field), (body, resp.body)


async def test_progress_completion_rank_and_a_reward_paid_once(
    api: Api, db: asyncpg.Connection
) -> None:
    boss = await admin(api, db)
    ann, bob, cat = await api.register(), await api.register(), await api.register()
    made = await api.post("/api/challenges", boss, json=challenge(maxParticipants=2))
    cid = made.body["id"]
    live = await listen_live(api, ann, f"user:{ann.id}")
    joined = await api.post(f"/api/challenges/{cid}/join", ann)
    assert joined.status == 200, joined.body
    assert joined.body["me"] == {
        "status": "active", "progress": 0, "target": 2, "rank": None, "pointsEarned": 0,
        "joinedAt": joined.body["me"]["joinedAt"], "completedAt": None,
    }  # fmt: skip
    assert (await api.post(f"/api/challenges/{cid}/join", ann)).status == 200  # idempotent
    assert (await api.post(f"/api/challenges/{cid}/join", bob)).status == 200
    full = await api.post(f"/api/challenges/{cid}/join", cat)
    assert (full.status, full.body["error"]["code"]) == (409, "challenge_full")
    await settled(api)
    before = (await profile(api, ann))["totalPoints"]
    await post(api, ann, unique("one "))
    await settled(api)
    frame = await live.next("event", "challenge_progress")
    assert frame["data"] == {"challengeId": cid, "title": made.body["title"], "progress": 1,
                             "target": 2, "completed": False}  # fmt: skip
    await post(api, ann, unique("two "))
    await settled(api)
    done = await live.next("event", "challenge_progress")
    assert (done["data"]["completed"], done["data"]["rank"]) == (True, 1)
    for n in range(2):
        await post(api, bob, unique(f"bob {n} "))
    await post(api, ann, unique("three "))  # after completing: nothing more
    await settled(api)
    detail = await api.get(f"/api/challenges/{cid}", ann)
    assert detail.status == 200
    assert [(s["userId"], s["rank"], s["status"]) for s in detail.body["standings"]] == [
        (ann.id, 1, "completed"), (bob.id, 2, "completed"),
    ]  # fmt: skip
    assert detail.body["challenge"]["me"]["pointsEarned"] == 30
    rewards = await db.fetch(
        "SELECT points FROM point_awards WHERE user_id = $1 AND source = 'challenge'",
        uuid.UUID(ann.id),
    )
    assert [r["points"] for r in rewards] == [30]
    me = await profile(api, ann)
    assert me["challengesCompleted"] == 1
    assert me["totalPoints"] == before + 10 + 10 + 10 + 30  # three posts and the reward
    notes = await api.get("/api/notifications", ann)
    assert [n["type"] for n in notes.body["notifications"]].count("challenge_completed") == 1
    # a completed challenge cannot be left; one not joined neither
    left = await api.delete(f"/api/challenges/{cid}/leave", ann)
    assert (left.status, left.body["error"]["code"]) == (409, "challenge_completed")
    assert (await api.delete(f"/api/challenges/{cid}/leave", cat)).status == 404
    listed = await api.get("/api/challenges", ann, params={"joined": "true"})
    assert cid in [c["id"] for c in listed.body["challenges"]]


async def test_leaving_and_ended_challenges(api: Api, db: asyncpg.Connection) -> None:
    boss = await admin(api, db)
    ann = await api.register()
    cid = (await api.post("/api/challenges", boss, json=challenge())).body["id"]
    assert (await api.post(f"/api/challenges/{cid}/join", ann)).status == 200
    assert (await api.delete(f"/api/challenges/{cid}/leave", ann)).status == 204
    await post(api, ann, unique("after leaving "))
    await settled(api)
    mine = await api.get("/api/challenges", ann, params={"joined": "true"})
    assert cid not in [c["id"] for c in mine.body["challenges"]]
    again = await api.post(f"/api/challenges/{cid}/join", ann)  # rejoining keeps progress 0
    assert again.body["me"]["progress"] == 0
    await db.execute(
        "UPDATE challenges SET end_date = NOW() - interval '1 minute' WHERE id = $1",
        uuid.UUID(cid),
    )
    late = await api.register()
    ended = await api.post(f"/api/challenges/{cid}/join", late)
    assert (ended.status, ended.body["error"]["code"]) == (409, "challenge_ended")
    old = await api.get("/api/challenges", late, params={"status": "ended"})
    assert cid in [c["id"] for c in old.body["challenges"]]
    for method, path in (
        ("GET", f"/api/challenges/{uuid.uuid4()}"),
        ("POST", f"/api/challenges/{uuid.uuid4()}/join"),
        ("DELETE", f"/api/challenges/{uuid.uuid4()}/leave"),
        ("GET", "/api/challenges/not-an-id"),
    ):
        assert (await api.call(method, path, ann)).status == 404, path
    assert (await api.get("/api/challenges", ann, params={"limit": "0"})).status == 422
    assert (await api.get("/api/challenges")).status == 401


async def test_a_pods_challenge_is_for_its_members_and_counts_acts_in_the_pod(
    api: Api,
) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner, isPublic=False)
    await invite_and_join(api, owner, member, pod)
    made = await api.post("/api/challenges", owner, json=challenge(podId=pod["id"]))
    cid = made.body["id"]
    assert (await api.get(f"/api/challenges/{cid}", outsider)).status == 404
    assert (await api.post(f"/api/challenges/{cid}/join", outsider)).status == 404
    listed = await api.get("/api/challenges", outsider)
    assert cid not in [c["id"] for c in listed.body["challenges"]]
    assert (await api.post(f"/api/challenges/{cid}/join", member)).status == 200
    await post(api, member, unique("elsewhere "))  # not in the pod: does not count
    await post(api, member, unique("in the pod "), podId=pod["id"])
    await settled(api)
    shown = await api.get(f"/api/challenges/{cid}", member)
    assert shown.body["challenge"]["me"]["progress"] == 1
    in_pod = await api.get("/api/challenges", member, params={"podId": pod["id"]})
    assert [c["id"] for c in in_pod.body["challenges"]] == [cid]
