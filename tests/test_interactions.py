"""Likes, bookmarks and shares through HTTP: toggles, idempotency under concurrent clicks,
counts that equal the interaction rows, live like counts and the author's notification."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.helpers import Api, listen_live
from tests.social import join, post


async def _count(db: asyncpg.Connection, post_id: str, kind: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM post_interactions WHERE post_id = $1 AND interaction_type = $2",
            uuid.UUID(post_id),
            kind,
        )
    )


async def test_like_toggles_and_active_sets(api: Api) -> None:
    author, fan = await api.register(), await api.register()
    made = await post(api, author, "like me")
    path = f"/api/posts/{made['id']}/interactions"
    first = await api.post(path, fan, json={"type": "like"})
    assert first.status == 200
    assert (first.body["active"], first.body["changed"], first.body["likeCount"]) == (True, True, 1)
    second = await api.post(path, fan, json={"type": "like"})
    assert (second.body["active"], second.body["changed"], second.body["likeCount"]) == (
        False,
        True,
        0,
    )
    for expected_change in (True, False):  # setting a state twice changes it once
        resp = await api.post(path, fan, json={"type": "like", "active": True})
        assert (resp.body["active"], resp.body["changed"], resp.body["likeCount"]) == (
            True,
            expected_change,
            1,
        )
    seen = await api.get(f"/api/posts/{made['id']}", fan)
    assert seen.body["liked"] is True
    assert seen.body["likeCount"] == 1
    assert (await api.get(f"/api/posts/{made['id']}", author)).body["liked"] is False


async def test_concurrent_likes_keep_counts_exact(api: Api, db: asyncpg.Connection) -> None:
    author = await api.register()
    fans = [await api.register() for _ in range(12)]
    made = await post(api, author, "popular")
    path = f"/api/posts/{made['id']}/interactions"
    # Everyone double-clicks at once; some also fire an explicit "like" alongside.
    calls = [api.post(path, fan, json={"type": "like"}) for fan in fans for _ in range(2)]
    calls += [api.post(path, fan, json={"type": "like", "active": True}) for fan in fans[:6]]
    results = await asyncio.gather(*calls)
    assert all(r.status == 200 for r in results), [r.body for r in results if r.status != 200]
    rows = await _count(db, made["id"], "like")
    stored = await db.fetchval("SELECT like_count FROM posts WHERE id = $1", uuid.UUID(made["id"]))
    assert stored == rows
    seen = await api.get(f"/api/posts/{made['id']}", author)
    assert seen.body["likeCount"] == rows
    feed = await api.get("/api/feed?type=all&limit=50", author)
    assert [p["likeCount"] for p in feed.body["posts"] if p["id"] == made["id"]] == [rows]
    # Each fan's "liked" flag agrees with the rows, whatever order the clicks landed in.
    likers = {
        str(r["user_id"])
        for r in await db.fetch(
            """SELECT user_id FROM post_interactions
               WHERE post_id = $1 AND interaction_type = 'like'""",
            uuid.UUID(made["id"]),
        )
    }
    for fan in fans:
        assert (await api.get(f"/api/posts/{made['id']}", fan)).body["liked"] == (fan.id in likers)
    # The same explicit click sent ten times at once is one like.
    newcomer = await api.register()
    burst = await asyncio.gather(
        *(api.post(path, newcomer, json={"type": "like", "active": True}) for _ in range(10))
    )
    assert sum(r.body["changed"] for r in burst) == 1
    assert await _count(db, made["id"], "like") == rows + 1
    # And a concurrent double toggle never errors or double counts.
    doubled = await api.register()
    pair = await asyncio.gather(*(api.post(path, doubled, json={"type": "like"}) for _ in range(2)))
    assert all(r.status == 200 for r in pair)
    final = await _count(db, made["id"], "like")
    assert final in (rows + 1, rows + 2)
    assert (await api.get(f"/api/posts/{made['id']}", author)).body["likeCount"] == final


async def test_likes_are_live_and_notify_the_author(api: Api) -> None:
    author, fan = await api.register(), await api.register()
    pod = await api.create_pod(author)
    await join(api, fan, pod)
    made = await post(api, author, "look", podId=pod["id"])
    room = await listen_live(api, author, f"pod:{pod['id']}")
    inbox = await listen_live(api, author, f"user:{author.id}")
    await api.post(f"/api/posts/{made['id']}/interactions", fan, json={"type": "like"})
    frame = await room.next("event", "post_like_count")
    assert frame["data"] == {"postId": made["id"], "likeCount": 1}
    note = await inbox.next("notification")
    assert note["type"] == "post_like"
    assert note["metadata"]["postId"] == made["id"]
    assert fan.username in note["title"]
    assert note["unreadCount"] == 1
    # Unliking changes the count but notifies nobody; liking your own post notifies nobody.
    await api.post(f"/api/posts/{made['id']}/interactions", fan, json={"type": "like"})
    assert (await room.next("event", "post_like_count"))["data"]["likeCount"] == 0
    await api.post(f"/api/posts/{made['id']}/interactions", author, json={"type": "like"})
    assert (await room.next("event", "post_like_count"))["data"]["likeCount"] == 1
    await inbox.nothing_more("notification")


async def test_liking_again_after_an_unlike_does_not_notify_again(api: Api) -> None:
    author, fan, other = await api.register(), await api.register(), await api.register()
    made = await post(api, author, "like me once")
    inbox = await listen_live(api, author, f"user:{author.id}")
    path = f"/api/posts/{made['id']}/interactions"
    for active in (True, False, True, False, True):
        resp = await api.post(path, fan, json={"type": "like", "active": active})
        assert resp.status == 200, resp.body
        assert resp.body["changed"], resp.body
    assert (await inbox.next("notification"))["unreadCount"] == 1
    await inbox.nothing_more("notification")
    # Concurrent like/unlike/like clicks still tell the author once.
    await asyncio.gather(
        *(api.post(path, other, json={"type": "like", "active": i % 2 == 0}) for i in range(6))
    )
    await api.post(path, other, json={"type": "like", "active": True})
    assert (await inbox.next("notification"))["unreadCount"] == 2
    await inbox.nothing_more("notification")
    listed = await api.get("/api/notifications", author)
    likes = [n for n in listed.body["notifications"] if n["type"] == "post_like"]
    assert sorted(n["senderId"] for n in likes) == sorted([fan.id, other.id])


async def test_bookmarks_and_shares(api: Api, db: asyncpg.Connection) -> None:
    author, reader = await api.register(), await api.register()
    made = await post(api, author, "keep this")
    path = f"/api/posts/{made['id']}/interactions"
    resp = await api.post(path, reader, json={"type": "bookmark"})
    assert (resp.body["active"], resp.body["bookmarkCount"]) == (True, 1)
    for _ in range(2):
        resp = await api.post(path, reader, json={"type": "share"})
        assert resp.status == 200
        assert resp.body["shareCount"] == 1
        assert resp.body["active"]
    resp = await api.post(path, reader, json={"type": "share", "active": False})
    assert resp.status == 422
    assert resp.error_field() == "active"
    assert await _count(db, made["id"], "share") == 1
    resp = await api.post(path, reader, json={"type": "bookmark", "active": False})
    assert (resp.body["active"], resp.body["bookmarkCount"]) == (False, 0)


async def test_interaction_refusals(api: Api) -> None:
    author, outsider = await api.register(), await api.register()
    pod = await api.create_pod(author)
    members_only = await post(api, author, "members", podId=pod["id"])
    public = await post(api, author, "everyone")
    missing = "00000000-0000-0000-0000-000000000000"
    resp = await api.post(
        f"/api/posts/{members_only['id']}/interactions", outsider, json={"type": "like"}
    )
    assert resp.status == 404
    assert (
        await api.post(f"/api/posts/{missing}/interactions", outsider, json={"type": "like"})
    ).status == 404
    for body, field in [
        ({"type": "love"}, "type"),
        ({}, "type"),
        ({"type": "like", "active": "yes"}, "active"),
        ({"type": "like", "extra": 1}, "extra"),
    ]:
        resp = await api.post(f"/api/posts/{public['id']}/interactions", outsider, json=body)
        assert resp.status == 422, body
        assert resp.error_field() == field, body
    resp = await api.post(
        f"/api/posts/{public['id']}/interactions",
        outsider,
        data=b"not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (
        await api.post(f"/api/posts/{public['id']}/interactions", None, json={"type": "like"})
    ).status == 401
