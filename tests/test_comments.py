"""Threaded comments through HTTP: the ordered, paginated tree; anonymity; likes; deletion;
live events and notifications."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User, listen_live
from tests.social import join, platform_moderator, post, set_role

MISSING = "00000000-0000-0000-0000-000000000000"


async def comment(
    api: Api, user: User, post_id: str, content: str, **fields: Any
) -> dict[str, Any]:
    resp = await api.post(
        f"/api/posts/{post_id}/comments", user, json={"content": content, **fields}
    )
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


def flatten(nodes: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        out.append(node["content"])
        out += flatten(node["replies"])
    return out


async def _thread(api: Api) -> tuple[User, dict[str, Any], dict[str, dict[str, Any]]]:
    """A post with this tree (oldest first at each level):
    A ─ A1 ─ A1a
      └ A2
    B
    """
    author, other = await api.register(), await api.register()
    made = await post(api, author, "discuss")
    pid = made["id"]
    a = await comment(api, other, pid, "A")
    b = await comment(api, author, pid, "B")
    a1 = await comment(api, author, pid, "A1", parentCommentId=a["id"])
    a1a = await comment(api, other, pid, "A1a", parentCommentId=a1["id"])
    a2 = await comment(api, other, pid, "A2", parentCommentId=a["id"])
    return author, made, {"A": a, "B": b, "A1": a1, "A1a": a1a, "A2": a2}


async def test_the_tree_comes_back_ordered_and_nested(api: Api) -> None:
    author, made, c = await _thread(api)
    resp = await api.get(f"/api/posts/{made['id']}/comments", author)
    assert resp.status == 200
    tree = resp.body["comments"]
    assert [n["content"] for n in tree] == ["A", "B"]
    assert [n["content"] for n in tree[0]["replies"]] == ["A1", "A2"]
    assert [n["content"] for n in tree[0]["replies"][0]["replies"]] == ["A1a"]
    assert tree[0]["replyCount"] == 2
    assert tree[0]["depth"] == 0
    assert tree[0]["replies"][0]["replies"][0]["depth"] == 2
    assert tree[0]["replies"][0]["parentCommentId"] == c["A"]["id"]
    assert resp.body["nextCursor"] is None
    assert (await api.get(f"/api/posts/{made['id']}", author)).body["commentCount"] == 5


async def test_the_tree_pages_depth_first(api: Api) -> None:
    author, made, c = await _thread(api)
    seen: list[str] = []
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        url = f"/api/posts/{made['id']}/comments?limit=2" + (f"&cursor={cursor}" if cursor else "")
        resp = await api.get(url, author)
        assert resp.status == 200, resp.body
        pages.append(resp.body["comments"])
        seen += flatten(resp.body["comments"])
        cursor = resp.body["nextCursor"]
        if cursor is None:
            break
    assert seen == ["A", "A1", "A1a", "A2", "B"]
    # A reply whose parent was on an earlier page opens its page, parent id set.
    assert pages[1][0]["content"] == "A1a"
    assert pages[1][0]["parentCommentId"] == c["A1"]["id"]
    # A subtree on its own:
    sub = await api.get(f"/api/posts/{made['id']}/comments?parentCommentId={c['A']['id']}", author)
    assert flatten(sub.body["comments"]) == ["A1", "A1a", "A2"]
    for query, field in [("limit=0", "limit"), ("cursor=xyz", "cursor"), ("order=new", "order")]:
        bad = await api.get(f"/api/posts/{made['id']}/comments?{query}", author)
        assert bad.status == 422
        assert bad.error_field() == field
    wrong_parent = await api.get(
        f"/api/posts/{made['id']}/comments?parentCommentId={MISSING}", author
    )
    assert wrong_parent.status == 404


async def test_anonymous_comments_and_notifications(api: Api) -> None:
    owner, author, shy, mod = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner)
    for user in (author, shy, mod):
        await join(api, user, pod)
    await set_role(api, owner, pod, mod, "moderator")
    made = await post(api, author, "feedback welcome", podId=pod["id"])
    room = await listen_live(api, owner, f"pod:{pod['id']}")
    inbox = await listen_live(api, author, f"user:{author.id}")
    mine = await comment(api, shy, made["id"], "honestly it is confusing", isAnonymous=True)
    assert mine["author"]["id"] == shy.id
    assert mine["isMine"] is True
    frame = await room.next("event", "comment_created")
    assert frame["data"]["postId"] == made["id"]
    assert frame["data"]["commentCount"] == 1
    assert frame["data"]["comment"]["author"] is None
    assert frame["data"]["comment"]["content"] == "honestly it is confusing"
    note = await inbox.next("notification")
    assert note["type"] == "comment"
    assert note["title"] == "Someone commented on your post"
    listed = {
        u.username: (await api.get(f"/api/posts/{made['id']}/comments", u)).body["comments"][0]
        for u in (author, mod, shy)
    }
    assert listed[author.username]["author"] is None
    assert listed[mod.username]["author"]["id"] == shy.id
    assert listed[shy.username]["author"]["id"] == shy.id
    # Replies notify the parent's author; nobody is notified about their own comments.
    shy_inbox = await listen_live(api, shy, f"user:{shy.id}")
    await comment(api, mod, made["id"], "which part?", parentCommentId=mine["id"])
    reply_note = await shy_inbox.next("notification")
    assert reply_note["type"] == "comment_reply"
    assert mod.username in reply_note["title"]
    assert (await inbox.next("notification"))["type"] == "comment"  # the post author too
    await comment(api, author, made["id"], "thanks all")
    await inbox.nothing_more("notification")


async def test_comment_likes_and_deletion(api: Api, db: Any) -> None:
    owner, author, fan, other = [await api.register() for _ in range(4)]
    pod = await api.create_pod(owner)
    for user in (author, fan, other):
        await join(api, user, pod)
    made = await post(api, owner, "thread", podId=pod["id"])
    top = await comment(api, author, made["id"], "top")
    reply = await comment(api, fan, made["id"], "reply", parentCommentId=top["id"])
    room = await listen_live(api, owner, f"pod:{pod['id']}")
    path = f"/api/comments/{top['id']}/interactions"
    liked = await api.post(path, fan, json={"type": "like"})
    assert liked.status == 200
    assert (liked.body["active"], liked.body["likeCount"]) == (True, 1)
    frame = await room.next("event", "comment_like_count")
    assert frame["data"] == {"postId": made["id"], "commentId": top["id"], "likeCount": 1}
    listed = await api.get(f"/api/posts/{made['id']}/comments", fan)
    assert listed.body["comments"][0]["liked"] is True
    assert listed.body["comments"][0]["likeCount"] == 1
    assert (await api.post(path, fan, json={"type": "like"})).body["likeCount"] == 0
    # Only the author or a moderator deletes; the reply keeps its place under a placeholder.
    assert (await api.delete(f"/api/comments/{top['id']}", other)).status == 403
    assert (await api.delete(f"/api/comments/{top['id']}", author)).status == 204
    gone = await room.next("event", "comment_deleted")
    assert gone["data"]["commentCount"] == 1
    tree = (await api.get(f"/api/posts/{made['id']}/comments", other)).body["comments"]
    assert tree[0]["status"] == "deleted"
    assert tree[0]["content"] is None
    assert tree[0]["author"] is None
    assert tree[0]["replies"][0]["content"] == "reply"
    assert (await api.get(f"/api/posts/{made['id']}", other)).body["commentCount"] == 1
    assert (await api.post(path, fan, json={"type": "like"})).status == 409
    resp = await api.post(
        f"/api/posts/{made['id']}/comments",
        fan,
        json={"content": "late", "parentCommentId": top["id"]},
    )
    assert resp.status == 409
    assert (await api.delete(f"/api/comments/{top['id']}", author)).status == 404
    assert (await api.delete(f"/api/comments/{reply['id']}", owner)).status == 204  # pod owner


async def test_comment_refusals(api: Api, db: Any) -> None:
    owner, outsider = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    hidden = await post(api, owner, "members only", podId=pod["id"])
    elsewhere = await post(api, owner, "another post")
    other_comment = await comment(api, owner, elsewhere["id"], "over here")
    assert (await api.get(f"/api/posts/{hidden['id']}/comments", outsider)).status == 404
    resp = await api.post(f"/api/posts/{hidden['id']}/comments", outsider, json={"content": "hi"})
    assert resp.status == 404
    assert (await api.get(f"/api/posts/{MISSING}/comments", owner)).status == 404
    target = hidden["id"]
    for body, field in [
        ({"content": ""}, "content"),
        ({"content": "x" * 5001}, "content"),
        ({}, "content"),
        ({"content": "x", "parentCommentId": other_comment["id"]}, "parentCommentId"),
        ({"content": "x", "parentCommentId": "nope"}, "parentCommentId"),
        ({"content": "x", "isAnonymous": 1}, "isAnonymous"),
    ]:
        resp = await api.post(f"/api/posts/{target}/comments", owner, json=body)
        assert resp.status == 422, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)
    # comments on the members-only post stay invisible to outsiders, likes included
    inner = await comment(api, owner, target, "inner")
    resp = await api.post(
        f"/api/comments/{inner['id']}/interactions", outsider, json={"type": "like"}
    )
    assert resp.status == 404
    resp = await api.post(f"/api/comments/{MISSING}/interactions", owner, json={"type": "like"})
    assert resp.status == 404
    resp = await api.post(f"/api/comments/{inner['id']}/interactions", owner, json={"type": "love"})
    assert resp.status == 422
    assert resp.error_field() == "type"
    # nesting is bounded
    parent = inner
    for depth in range(1, 16):
        parent = await comment(api, owner, target, f"level {depth}", parentCommentId=parent["id"])
    resp = await api.post(
        f"/api/posts/{target}/comments",
        owner,
        json={"content": "too deep", "parentCommentId": parent["id"]},
    )
    assert resp.status == 422
    assert resp.error_field() == "parentCommentId"
    staff = await platform_moderator(api, db, await api.register())
    assert (await api.get(f"/api/posts/{target}/comments", staff)).status == 404
