"""Mobile endpoints through HTTP: the compact feed, and offline sync whose actions apply once
however often the sync is retried."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from typing import Any

import asyncpg

from peerspark_rt.social.mobile import resume_point
from tests.helpers import Api
from tests.social import invite_and_join, join, post, resource


async def test_compact_feed(api: Api) -> None:
    author, reader = await api.register(), await api.register()
    pod = await api.create_pod(author)
    await join(api, reader, pod)
    made = [await post(api, author, f"m{i}", podId=pod["id"], tags=["t"]) for i in range(3)]
    await api.post(f"/api/posts/{made[2]['id']}/interactions", reader, json={"type": "like"})
    first = await api.get("/api/mobile/feed?limit=2", reader)
    assert first.status == 200
    entry = first.body["posts"][0]
    assert set(entry) == {
        "id", "content", "type", "createdAt", "updatedAt", "author", "pod", "podId", "stats",
        "userInteractions", "media", "tags",
    }  # fmt: skip
    assert entry["id"] == made[2]["id"]
    assert entry["author"] == {
        "id": author.id,
        "name": "Test User",
        "username": author.username,
        "avatar": None,
        "verified": False,
    }
    assert entry["pod"] == pod["name"]
    assert entry["tags"] == ["t"]
    assert entry["stats"] == {"likes": 1, "comments": 0}
    assert entry["userInteractions"] == {"liked": True, "bookmarked": False}
    rest = await api.get(f"/api/mobile/feed?limit=2&cursor={first.body['nextCursor']}", reader)
    assert [p["id"] for p in rest.body["posts"]][:1] == [made[0]["id"]]
    assert (await api.get("/api/mobile/feed?limit=0", reader)).error_field() == "limit"
    assert (await api.get("/api/mobile/feed?cursor=zzz", reader)).error_field() == "cursor"


def _actions(post_id: str, resource_id: str) -> list[dict[str, Any]]:
    return [
        {"clientActionId": "c-1", "type": "create_post", "data": {"content": "written offline"}},
        {"clientActionId": "c-2", "type": "like_post", "data": {"postId": post_id}},
        {"clientActionId": "c-3", "type": "bookmark_resource", "data": {"resourceId": resource_id}},
        {"clientActionId": "c-4", "type": "teleport", "data": {}},
        {"clientActionId": "c-5", "type": "create_post", "data": {"content": ""}},
        {
            "clientActionId": "c-6",
            "type": "create_comment",
            "data": {"postId": post_id, "content": "offline comment"},
        },
    ]


async def test_sync_applies_each_action_once(api: Api, db: asyncpg.Connection) -> None:
    author, phone = await api.register(), await api.register()
    target = await post(api, author, "like me from the train")
    vault = await resource(api, author, "Offline notes", isPublic=True)
    body = {
        "lastSyncTimestamp": "2020-01-01T00:00:00Z",
        "pendingActions": _actions(target["id"], vault["id"]),
    }
    first = await api.post("/api/mobile/sync", phone, json=body)
    assert first.status == 200, first.body
    results = {r["clientActionId"]: r for r in first.body["syncResults"]}
    assert [r["clientActionId"] for r in first.body["syncResults"]] == [
        "c-1", "c-2", "c-3", "c-4", "c-5", "c-6",
    ]  # fmt: skip
    assert results["c-1"]["status"] == "ok"
    assert results["c-1"]["replayed"] is False
    created = results["c-1"]["result"]["postId"]
    assert results["c-1"]["result"]["post"]["content"] == "written offline"
    assert results["c-2"]["result"]["likeCount"] == 1
    assert results["c-2"]["result"]["active"]
    assert results["c-3"]["result"] == {
        "resourceId": vault["id"],
        "bookmarked": True,
        "changed": True,
    }
    assert results["c-4"]["status"] == "error"
    assert results["c-4"]["error"]["code"] == "unknown_action"
    assert results["c-5"]["status"] == "error"
    assert results["c-5"]["error"]["details"] == [
        {"field": "content", "reason": "must not be empty"}
    ]
    assert results["c-6"]["status"] == "ok"
    # The same sync again (the phone never saw the answer): nothing is applied twice.
    retry = await api.post("/api/mobile/sync", phone, json=body)
    again = {r["clientActionId"]: r for r in retry.body["syncResults"]}
    for cid in ("c-1", "c-2", "c-3", "c-5", "c-6"):
        assert again[cid]["replayed"] is True, cid
        assert again[cid]["status"] == results[cid]["status"]
        assert again[cid].get("result") == results[cid].get("result"), cid
    assert again["c-4"]["error"]["code"] == "unknown_action"
    me = uuid.UUID(phone.id)
    assert await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", me) == 1
    assert await db.fetchval("SELECT count(*) FROM comments WHERE author_id = $1", me) == 1
    likes = await db.fetchval(
        "SELECT count(*) FROM post_interactions WHERE user_id = $1 AND interaction_type = 'like'",
        me,
    )
    assert likes == 1  # a toggle replayed would have unliked
    assert (await api.get(f"/api/posts/{target['id']}", phone)).body["likeCount"] == 1
    assert (await api.get(f"/api/posts/{created}", phone)).status == 200


async def test_concurrent_retries_apply_once(api: Api, db: asyncpg.Connection) -> None:
    phone = await api.register()
    body = {
        "pendingActions": [
            {"clientActionId": f"race-{i}", "type": "create_post", "data": {"content": f"race {i}"}}
            for i in range(3)
        ]
    }
    answers = await asyncio.gather(
        *(api.post("/api/mobile/sync", phone, json=body) for _ in range(4))
    )
    assert all(a.status == 200 for a in answers)
    count = await db.fetchval(
        "SELECT count(*) FROM posts WHERE author_id = $1", uuid.UUID(phone.id)
    )
    assert count == 3
    ids = {r["result"]["postId"] for a in answers for r in a.body["syncResults"]}
    assert len(ids) == 3  # every answer names the same three posts
    assert sum(not r["replayed"] for a in answers for r in a.body["syncResults"]) == 3
    assert answers[0].body["updates"]["fullSyncRequired"] is True


async def test_other_actions_and_reused_ids(api: Api) -> None:
    author, phone = await api.register(), await api.register()
    mine = await post(api, phone, "typo here")
    theirs = await post(api, author, "interesting")
    comment = await api.post(f"/api/posts/{theirs['id']}/comments", author, json={"content": "c"})
    vault = await resource(api, author, "Rate me", isPublic=True)
    missing = "00000000-0000-0000-0000-000000000000"
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("u", "update_post", {"postId": mine["id"], "content": "fixed"}),
        ("b", "bookmark_post", {"postId": theirs["id"]}),
        ("s", "share_post", {"postId": theirs["id"]}),
        ("l", "like_comment", {"commentId": comment.body["id"]}),
        ("r", "rate_resource", {"resourceId": vault["id"], "rating": 4}),
        ("d", "delete_post", {"postId": mine["id"]}),
        ("x", "update_post", {"content": "no id"}),
        ("y", "like_post", {"postId": "not-a-uuid"}),
        ("z", "like_post", {"postId": theirs["id"], "bogus": 1}),
        ("n", "like_post", {"postId": missing}),
    ]
    actions = [{"clientActionId": c, "type": t, "data": d} for c, t, d in steps]
    resp = await api.post("/api/mobile/sync", phone, json={"pendingActions": actions})
    got = {r["clientActionId"]: r for r in resp.body["syncResults"]}
    assert got["u"]["result"]["post"]["content"] == "fixed"
    assert got["b"]["result"]["bookmarkCount"] == 1
    assert got["s"]["result"]["shareCount"] == 1
    assert got["l"]["result"]["likeCount"] == 1
    assert got["r"]["result"]["ratingAverage"] == 4.0
    assert got["d"]["result"] == {"postId": mine["id"], "deleted": True}
    # the same field names and reasons as REST bodies get
    assert got["x"]["error"]["details"] == [{"field": "data.postId", "reason": "is required"}]
    assert got["y"]["error"]["details"] == [{"field": "data.postId", "reason": "invalid UUID"}]
    assert got["z"]["error"]["details"] == [
        {"field": "data.bogus", "reason": "is not a known field"}
    ]
    rest = await api.post(f"/api/posts/{theirs['id']}/interactions", phone, json={"bogus": 1})
    assert rest.body["error"]["details"] == [{"field": "bogus", "reason": "is not a known field"}]
    assert got["n"]["error"]["code"] == "not_found"
    assert (await api.get(f"/api/posts/{mine['id']}", phone)).status == 404
    reused = await api.post(
        "/api/mobile/sync",
        phone,
        json={
            "pendingActions": [
                {"clientActionId": "u", "type": "like_post", "data": {"postId": theirs["id"]}}
            ]
        },
    )
    assert reused.body["syncResults"][0]["error"]["code"] == "client_id_reused"


async def test_updates_since_the_last_sync(api: Api) -> None:
    friend, phone = await api.register(), await api.register()
    pod = await api.create_pod(friend)
    await join(api, phone, pod)
    # (from now on: the shared test database holds other tests' public posts too)
    start = (await api.post("/api/mobile/sync", phone, json={})).body["syncTimestamp"]
    old = await post(api, friend, "before", podId=pod["id"])
    doomed = await post(api, friend, "soon gone", podId=pod["id"])
    first = await api.post("/api/mobile/sync", phone, json={"lastSyncTimestamp": start})
    stamp = first.body["syncTimestamp"]
    assert {old["id"], doomed["id"]} <= {p["id"] for p in first.body["updates"]["posts"]}
    newer = await post(api, friend, "after", podId=pod["id"])
    assert (await api.delete(f"/api/posts/{doomed['id']}", friend)).status == 204
    await api.post(f"/api/posts/{newer['id']}/comments", friend, json={"content": "self"})
    theirs = await api.post(f"/api/posts/{newer['id']}/interactions", friend, json={"type": "like"})
    assert theirs.status == 200
    mine = await post(api, phone, "mine")
    await api.post(f"/api/posts/{mine['id']}/interactions", friend, json={"type": "like"})
    second = await api.post("/api/mobile/sync", phone, json={"lastSyncTimestamp": stamp})
    updates = second.body["updates"]
    assert [p["id"] for p in updates["posts"]] == [newer["id"], mine["id"]]
    assert updates["deletedPostIds"] == [doomed["id"]]
    assert [n["type"] for n in updates["notifications"]] == ["post_like"]
    assert updates["hasMore"] is False
    assert updates["fullSyncRequired"] is False
    assert dt.datetime.fromisoformat(second.body["syncTimestamp"]) > dt.datetime.fromisoformat(
        stamp
    )


async def test_sync_request_validation(api: Api) -> None:
    phone = await api.register()
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    for body, field in [
        ({"lastSyncTimestamp": "yesterday"}, "lastSyncTimestamp"),
        ({"lastSyncTimestamp": "2024-01-01T00:00:00"}, "lastSyncTimestamp"),
        ({"lastSyncTimestamp": future}, "lastSyncTimestamp"),
        ({"pendingActions": [{"type": "like_post"}]}, "pendingActions[0].clientActionId"),
        (
            {"pendingActions": [{"clientActionId": "", "type": "x"}]},
            "pendingActions[0].clientActionId",
        ),
        (
            {"pendingActions": [{"clientActionId": "a", "type": "x", "data": []}]},
            "pendingActions[0].data",
        ),
        (
            {"pendingActions": [{"clientActionId": str(i), "type": "x"} for i in range(101)]},
            "pendingActions",
        ),
        ({"pending": []}, "pending"),
    ]:
        resp = await api.post("/api/mobile/sync", phone, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)
    assert (await api.post("/api/mobile/sync", None, json={})).status == 401


async def test_deleted_post_ids_name_only_posts_the_user_could_read(api: Api) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    private = await api.create_pod(owner, isPublic=False)
    await invite_and_join(api, owner, member, private)
    since = (await api.post("/api/mobile/sync", owner, json={})).body["syncTimestamp"]
    # "public" inside a private pod still reaches only the pod's members
    marked_public = await post(api, owner, "members only", podId=private["id"], visibility="public")
    pod_only = await post(api, owner, "pod only", podId=private["id"])
    everyone = await post(api, owner, "for everyone")
    for made in (marked_public, pod_only, everyone):
        assert (await api.delete(f"/api/posts/{made['id']}", owner)).status == 204

    async def gone(user: Any) -> set[str]:
        resp = await api.post("/api/mobile/sync", user, json={"lastSyncTimestamp": since})
        assert resp.status == 200, resp.body
        return set(resp.body["updates"]["deletedPostIds"])

    mine = {marked_public["id"], pod_only["id"], everyone["id"]}
    assert mine & await gone(outsider) == {everyone["id"]}
    assert mine & await gone(member) == mine
    assert mine & await gone(owner) == mine


async def test_a_cut_sync_resumes_where_it_stopped(make_client: Any) -> None:
    api: Api = await make_client(moderation_posts_per_hour=1000)
    friend, phone = await api.register(), await api.register()
    stamp = (await api.post("/api/mobile/sync", phone, json={})).body["syncTimestamp"]
    made = []
    for i in range(105):
        text = " ".join(secrets.token_hex(4) for _ in range(3))  # unlike each other
        made.append((await post(api, friend, f"{i} {text}"))["id"])

    first = await api.post("/api/mobile/sync", phone, json={"lastSyncTimestamp": stamp})
    page = first.body["updates"]["posts"]
    assert [p["id"] for p in page] == made[:100]
    assert first.body["updates"]["hasMore"] is True
    assert first.body["updates"]["fullSyncRequired"] is False
    # the next sync starts after the last change sent, not at "now"
    assert first.body["syncTimestamp"] == page[-1]["updatedAt"]
    edit = await api.put(f"/api/posts/{made[0]}", friend, json={"content": "edited meanwhile"})
    assert edit.status == 200

    second = await api.post(
        "/api/mobile/sync", phone, json={"lastSyncTimestamp": first.body["syncTimestamp"]}
    )
    rest = second.body["updates"]["posts"]
    assert [p["id"] for p in rest] == [*made[100:], made[0]]
    assert rest[-1]["content"] == "edited meanwhile"
    assert rest[-1]["updatedAt"] > page[0]["updatedAt"]
    assert second.body["updates"]["hasMore"] is False


def test_resume_point_never_skips_a_change() -> None:
    t = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=s) for s in range(10)]
    assert resume_point([[t[0], t[1]], []], 2) == (None, False)  # nothing cut
    # cut after t[2] in one stream and after t[4] in another: resume from the earlier
    assert resume_point([[t[0], t[1], t[2], t[3]], [t[4], t[4], t[4], t[5]]], 3) == (t[2], False)
    # the first row left out shares its time with the last ones sent: resume before them
    assert resume_point([[t[0], t[1], t[1], t[1]]], 3) == (t[0], False)
    # more changes at one instant than a page holds: no time resumes it
    assert resume_point([[t[1], t[1], t[1], t[1]], [t[0], t[9]]], 3) == (None, True)
