"""Every meaningful act writes its analytics event once, in its own transaction: also when it
is retried (a mobile sync replayed, a chat cid resent, a departure heard on two nodes)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from peerspark_rt.sessions.service import SESSIONS
from tests.helpers import Api, User, open_session, unique, wait_until
from tests.social import post, resource


async def events(db: asyncpg.Connection, user: User, kind: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT event, pod_id, session_id, value, dedupe_key, properties, occurred_at
           FROM analytics_events WHERE user_id = $1 AND event = $2 ORDER BY id""",
        uuid.UUID(user.id),
        kind,
    )


async def eventually(db: asyncpg.Connection, user: User, kind: str, n: int) -> list[Any]:
    """The user's events of `kind` once there are `n` (hooks run after the act)."""

    async def enough() -> list[Any] | None:
        rows = await events(db, user, kind)
        return rows if len(rows) >= n else None

    found: list[Any] = await wait_until(enough, 5, 0.05, f"{n} {kind} events")
    return found


async def sync(api: Api, user: User, *actions: tuple[str, str, dict[str, Any]]) -> Any:
    body = {"pendingActions": [{"clientActionId": c, "type": t, "data": d} for c, t, d in actions]}
    resp = await api.post("/api/mobile/sync", user, json=body)
    assert resp.status == 200, resp.body
    return resp.body


async def test_sign_up_and_logins(api: Api, db: asyncpg.Connection) -> None:
    ann = await api.register()
    assert len(await events(db, ann, "registered")) == 1
    again = await api.post("/api/auth/login", json={"email": ann.email, "password": ann.password})
    assert again.status == 200
    logins = await events(db, ann, "login")
    # the sign-up's session and the login's, each once
    assert [r["dedupe_key"] for r in logins] == [ann.session_id, again.body["sessionId"]]
    failed = await api.post("/api/auth/login", json={"email": ann.email, "password": "wrong-1A"})
    assert failed.status == 401
    assert len(await events(db, ann, "login")) == 2


async def test_posts_comments_likes_and_answers_once_on_replayed_syncs(
    api: Api, db: asyncpg.Connection
) -> None:
    asker, helper = await api.register(), await api.register()
    pod = await api.create_pod(asker, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", helper)).status == 200
    question = await post(api, asker, unique("How do limits work? "), podId=pod["id"],
                          postType="question")  # fmt: skip
    actions = [
        ("c1", "create_post", {"content": unique("offline post "), "podId": pod["id"]}),
        ("c2", "create_comment", {"postId": question["id"], "content": unique("Like this: ")}),
        ("c3", "like_post", {"postId": question["id"]}),
    ]
    first = await sync(api, helper, *actions)
    await sync(api, helper, *actions)  # the phone did not hear the answer and sends it again
    assert all(r["status"] == "ok" for r in first["syncResults"])
    assert len(await events(db, helper, "post_created")) == 1
    made = await events(db, helper, "comment_created")
    assert [r["pod_id"] for r in made] == [uuid.UUID(pod["id"])]
    assert len(await events(db, asker, "comment_received")) == 1
    assert len(await events(db, helper, "like_given")) == 1
    assert len(await events(db, asker, "like_received")) == 1
    # unliking and liking again is not a second like
    for active in (False, True):
        resp = await api.post(
            f"/api/posts/{question['id']}/interactions", helper,
            json={"type": "like", "active": active},
        )  # fmt: skip
        assert resp.status == 200
    assert len(await events(db, asker, "like_received")) == 1
    # liking a comment: given by the asker, received by the helper
    comment_id = first["syncResults"][1]["result"]["commentId"]
    resp = await api.post(f"/api/comments/{comment_id}/interactions", asker, json={"type": "like"})
    assert resp.status == 200
    assert [r["dedupe_key"] for r in await events(db, helper, "like_received")] == [
        f"comment:{comment_id}:{asker.id}"
    ]
    # the asker accepts the answer (twice: a double tap)
    for _ in range(2):
        resp = await api.post(
            f"/api/posts/{question['id']}/accepted-answer", asker, json={"commentId": comment_id}
        )
        assert resp.status == 200, resp.body
    assert resp.body == {"postId": question["id"], "commentId": comment_id, "changed": False}
    assert len(await events(db, helper, "answer_accepted")) == 1
    shown = await api.get(f"/api/posts/{question['id']}", helper)
    assert shown.body["acceptedCommentId"] == comment_id
    # refusals: not the author, own comment, not a question
    refused = await api.post(
        f"/api/posts/{question['id']}/accepted-answer", helper, json={"commentId": comment_id}
    )
    assert refused.status == 403
    mine = await api.post(f"/api/posts/{question['id']}/comments", asker, json={"content": "me"})
    own = await api.post(
        f"/api/posts/{question['id']}/accepted-answer", asker, json={"commentId": mine.body["id"]}
    )
    assert (own.status, own.error_field()) == (422, "commentId")
    plain = await post(api, asker, unique("not a question "))
    wrong = await api.post(
        f"/api/posts/{plain['id']}/accepted-answer", asker, json={"commentId": comment_id}
    )
    assert wrong.status == 409


async def test_resource_views_downloads_shares_and_ratings(
    api: Api, db: asyncpg.Connection
) -> None:
    owner, reader = await api.register(), await api.register()
    notes = await resource(
        api, owner, "Limits", isPublic=True, resourceType="link",
        fileUrl="https://example.com/limits.pdf",
    )  # fmt: skip
    for _ in range(2):  # a reload within the hour is one view
        assert (await api.get(f"/api/resources/{notes['id']}", reader)).status == 200
        assert (await api.get(f"/api/resources/{notes['id']}/download", reader)).status == 200
        resp = await api.post(f"/api/resources/{notes['id']}/rate", reader, json={"rating": 4})
        assert resp.status in (200, 201)
        share = {"shareWithUserId": reader.id, "permissionLevel": "view"}
        resp = await api.post(f"/api/resources/{notes['id']}/share", owner, json=share)
        assert resp.status in (200, 201)
    assert len(await events(db, reader, "resource_viewed")) == 1
    assert len(await events(db, reader, "resource_downloaded")) == 1
    rated = await events(db, reader, "resource_rated")
    assert [r["value"] for r in rated] == [4.0]
    assert len(await events(db, owner, "resource_shared")) == 1


async def test_chat_messages_and_presence_in_a_session_room(
    api: Api, db: asyncpg.Connection
) -> None:
    host, guest = await api.register(), await api.register()
    room = await open_session(api, host, guest)
    session_id = uuid.UUID(room.partition(":")[2])
    live = await api.live(guest)
    await live.join(room)
    await live.send(room, "hello", cid="same-cid")
    again = await live.send(room, "hello", cid="same-cid")  # a resend after a lost ack
    assert again.duplicate
    sent = await events(db, guest, "message_sent")
    assert [r["session_id"] for r in sent] == [session_id]
    joined = await eventually(db, guest, "session_joined", 1)
    await live.leave(room)
    left = await eventually(db, guest, "session_left", 1)
    assert left[0]["dedupe_key"] == joined[0]["dedupe_key"]
    assert left[0]["value"] >= 0
    # the departure heard again (another node, a dead node's presence expiring): no new event
    sessions = api.app[SESSIONS]
    user_id = uuid.UUID(guest.id)
    gone = [(session_id, user_id, False)]
    await asyncio.gather(*(sessions.record_attendance(gone) for _ in range(3)))
    assert len(await events(db, guest, "session_left")) == 1
