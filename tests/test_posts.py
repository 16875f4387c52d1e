"""Posts through HTTP: create, read, edit, delete; types, tags, media, anonymity, pinning,
and what the pod's room hears live."""

from __future__ import annotations

import asyncpg

from tests.helpers import Api, listen_live
from tests.social import invite_and_join, join, platform_moderator, post, set_role

MISSING = "00000000-0000-0000-0000-000000000000"


async def test_create_post_in_a_pod_and_the_room_hears_it(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    live = await listen_live(api, member, f"pod:{pod['id']}")
    resp = await api.post(
        "/api/posts",
        owner,
        json={
            "content": "  Week 3 problem set is up  ",
            "postType": "announcement",
            "podId": pod["id"],
            "tags": ["Calculus", "homework", "calculus"],
            "mediaUrls": ["https://example.com/sheet.pdf"],
        },
    )
    assert resp.status == 201, resp.body
    created = resp.body
    assert created["content"] == "Week 3 problem set is up"
    assert created["postType"] == "announcement"
    assert created["visibility"] == "pod"  # the default inside a pod
    assert created["tags"] == ["calculus", "homework"]
    assert created["mediaUrls"] == ["https://example.com/sheet.pdf"]
    assert created["author"]["id"] == owner.id
    assert created["isMine"] is True
    assert created["podName"] == pod["name"]
    assert (created["likeCount"], created["commentCount"], created["shareCount"]) == (0, 0, 0)
    frame = await live.next("event", "post_created")
    assert frame["data"]["id"] == created["id"]
    assert frame["data"]["content"] == "Week 3 problem set is up"
    assert frame["data"]["liked"] is False
    assert frame["data"]["isMine"] is False


async def test_every_post_type_is_accepted(api: Api) -> None:
    owner = await api.register()
    pod = await api.create_pod(owner)
    for kind in ("general", "question", "resource", "milestone", "announcement"):
        made = await post(api, owner, f"a {kind}", postType=kind, podId=pod["id"])
        assert made["postType"] == kind


async def test_create_post_validation_names_the_field(api: Api) -> None:
    user = await api.register()
    pod = await api.create_pod(user)
    for body, field in [
        ({}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 10_001}, "content"),
        ({"content": "x", "postType": "rant"}, "postType"),
        ({"content": "x", "visibility": "friends"}, "visibility"),
        ({"content": "x", "visibility": "pod"}, "visibility"),
        ({"content": "x", "mediaUrls": ["javascript:alert(1)"]}, "mediaUrls[0]"),
        ({"content": "x", "mediaUrls": ["https://e.com/a"] * 11}, "mediaUrls"),
        ({"content": "x", "tags": ["t"] * 21}, "tags"),
        ({"content": "x", "podId": "not-a-uuid"}, "podId"),
        ({"content": "x", "isAnonymous": "yes"}, "isAnonymous"),
        ({"content": "x", "colour": "red"}, "colour"),
        ({"content": "x", "podId": pod["id"], "attachments": [{"uploadId": MISSING}]},
         "attachments[0].uploadId"),
    ]:  # fmt: skip
        resp = await api.post("/api/posts", user, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)


async def test_posting_into_pods_needs_membership(api: Api) -> None:
    owner, outsider = await api.register(), await api.register()
    public = await api.create_pod(owner)
    secret = await api.create_pod(owner, isPublic=False)
    resp = await api.post("/api/posts", outsider, json={"content": "hi", "podId": public["id"]})
    assert resp.status == 403
    assert resp.body["error"]["code"] == "not_a_member"
    resp = await api.post("/api/posts", outsider, json={"content": "hi", "podId": secret["id"]})
    assert resp.status == 404
    resp = await api.post("/api/posts", outsider, json={"content": "hi", "podId": MISSING})
    assert resp.status == 404
    assert (await api.post("/api/posts", None, json={"content": "hi"})).status == 401


async def test_pinning_and_announcements_need_a_moderator(api: Api) -> None:
    owner, mod, member = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, mod, pod)
    await join(api, member, pod)
    await set_role(api, owner, pod, mod, "moderator")
    for extra in ({"isPinned": True}, {"postType": "announcement"}):
        resp = await api.post(
            "/api/posts", member, json={"content": "me first", "podId": pod["id"], **extra}
        )
        assert resp.status == 403, extra
        assert resp.body["error"]["code"] == "insufficient_role"
    # Outside pods only platform moderators pin.
    resp = await api.post("/api/posts", member, json={"content": "x", "isPinned": True})
    assert resp.status == 403
    older = await post(api, member, "an older question", podId=pod["id"])
    pinned = await post(api, mod, "read the rules", podId=pod["id"], isPinned=True)
    newer = await post(api, member, "a newer question", podId=pod["id"])
    feed = await api.get(f"/api/feed?podId={pod['id']}", member)
    assert [p["id"] for p in feed.body["posts"]] == [pinned["id"], newer["id"], older["id"]]
    # A moderator pins an existing post; its author (a member) cannot unpin it.
    resp = await api.put(f"/api/posts/{older['id']}", mod, json={"isPinned": True})
    assert resp.status == 200
    assert resp.body["isPinned"] is True
    resp = await api.put(f"/api/posts/{older['id']}", member, json={"isPinned": False})
    assert resp.status == 403
    feed = await api.get(f"/api/feed?podId={pod['id']}", member)
    assert [p["id"] for p in feed.body["posts"]] == [pinned["id"], older["id"], newer["id"]]


async def test_anonymous_posts_hide_the_author_except_from_author_and_moderators(
    api: Api, db: asyncpg.Connection
) -> None:
    owner, author, member = await api.register(), await api.register(), await api.register()
    staff = await platform_moderator(api, db, await api.register())
    pod = await api.create_pod(owner)
    await join(api, author, pod)
    await join(api, member, pod)
    await join(api, staff, pod)  # platform moderators read what members read, no more
    live = await listen_live(api, member, f"pod:{pod['id']}")
    made = await post(api, author, "I do not get recursion", podId=pod["id"], isAnonymous=True)
    assert made["isAnonymous"] is True
    assert made["author"]["id"] == author.id  # the author sees themself
    frame = await live.next("event", "post_created")
    assert frame["data"]["author"] is None
    assert frame["data"]["isAnonymous"] is True
    seen = (await api.get(f"/api/posts/{made['id']}", member)).body
    assert seen["author"] is None
    in_feed = await api.get(f"/api/feed?podId={pod['id']}", member)
    assert in_feed.body["posts"][0]["author"] is None
    for insider in (owner, staff):  # the pod's owner outranks its moderators
        seen = (await api.get(f"/api/posts/{made['id']}", insider)).body
        assert seen["author"]["id"] == author.id
    mobile = await api.get("/api/mobile/feed", member)
    mine = [p for p in mobile.body["posts"] if p["id"] == made["id"]]
    assert mine
    assert mine[0]["author"] is None


async def test_get_post_errors(api: Api) -> None:
    user = await api.register()
    assert (await api.get(f"/api/posts/{MISSING}", user)).status == 404
    assert (await api.get("/api/posts/not-a-uuid", user)).status == 404
    made = await post(api, user)
    assert (await api.get(f"/api/posts/{made['id']}")).status == 401


async def test_author_edits_and_the_room_hears_it(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    made = await post(api, member, "draft thought", podId=pod["id"])
    live = await listen_live(api, owner, f"pod:{pod['id']}")
    resp = await api.put(
        f"/api/posts/{made['id']}",
        member,
        json={"content": "better thought", "tags": ["Ideas"], "postType": "question"},
    )
    assert resp.status == 200, resp.body
    assert (resp.body["content"], resp.body["tags"], resp.body["postType"]) == (
        "better thought",
        ["ideas"],
        "question",
    )
    assert resp.body["updatedAt"] > made["updatedAt"]
    frame = await live.next("event", "post_updated")
    assert frame["data"]["content"] == "better thought"
    # Made private, it leaves the room: the room is told it is gone.
    resp = await api.put(f"/api/posts/{made['id']}", member, json={"visibility": "private"})
    assert resp.status == 200
    assert (await live.next("event", "post_deleted"))["data"] == {"postId": made["id"]}
    assert (await api.get(f"/api/posts/{made['id']}", owner)).status == 404


async def test_edit_refusals(api: Api) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    made = await post(api, member, "mine", podId=pod["id"])
    path = f"/api/posts/{made['id']}"
    assert (await api.put(path, owner, json={"content": "owner edit"})).status == 403
    assert (await api.put(path, outsider, json={"content": "x"})).status == 404
    assert (await api.put(path, member, json={})).status == 422
    resp = await api.put(path, member, json={"content": ""})
    assert resp.status == 422
    assert resp.error_field() == "content"
    resp = await api.put(path, member, json={"postType": "announcement"})
    assert resp.status == 403
    solo = await post(api, member, "no pod")
    resp = await api.put(f"/api/posts/{solo['id']}", member, json={"visibility": "pod"})
    assert resp.status == 422
    assert resp.error_field() == "visibility"
    assert (await api.put(f"/api/posts/{MISSING}", member, json={"content": "x"})).status == 404


async def test_delete_by_author_or_moderator_is_soft(api: Api, db: asyncpg.Connection) -> None:
    owner, mod, member, other = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner)
    for user in (mod, member, other):
        await join(api, user, pod)
    await set_role(api, owner, pod, mod, "moderator")
    first = await post(api, member, "first", podId=pod["id"])
    second = await post(api, member, "second", podId=pod["id"])
    live = await listen_live(api, other, f"pod:{pod['id']}")
    assert (await api.delete(f"/api/posts/{first['id']}", other)).status == 403
    assert (await api.delete(f"/api/posts/{first['id']}", member)).status == 204
    assert (await live.next("event", "post_deleted"))["data"] == {"postId": first["id"]}
    assert (await api.delete(f"/api/posts/{second['id']}", mod)).status == 204
    for user in (member, mod, other):
        assert (await api.get(f"/api/posts/{first['id']}", user)).status == 404
    assert (await api.delete(f"/api/posts/{first['id']}", member)).status == 404
    statuses = await db.fetch(
        "SELECT status FROM posts WHERE id = ANY($1::uuid[])", [first["id"], second["id"]]
    )
    assert [r["status"] for r in statuses] == ["deleted", "deleted"]
    feed = await api.get(f"/api/feed?podId={pod['id']}", member)
    assert feed.body["posts"] == []


async def test_private_posts_and_private_pods(api: Api) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    secret = await api.create_pod(owner, isPublic=False)
    await invite_and_join(api, owner, member, secret)
    diary = await post(api, owner, "note to self", visibility="private")
    inside = await post(api, owner, "members only", podId=secret["id"], visibility="public")
    assert (await api.get(f"/api/posts/{diary['id']}", owner)).status == 200
    for viewer in (member, outsider):
        assert (await api.get(f"/api/posts/{diary['id']}", viewer)).status == 404
    # "public" inside a private pod still reaches only the pod's members
    assert (await api.get(f"/api/posts/{inside['id']}", member)).status == 200
    assert (await api.get(f"/api/posts/{inside['id']}", outsider)).status == 404
