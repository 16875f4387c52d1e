"""Moderation: session messages (websocket and REST) pass through local rules and, when AI is
configured, the moderation endpoint; held content takes no sequence number, its author is told
why, and reviewers list, approve (it is then published) or reject it. Posts and comments use the
same service; the feed registers their publishers."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from peerspark_rt.accounts.auth import Principal
from peerspark_rt.client import LiveError
from peerspark_rt.moderation.service import MODERATION, HeldContent, ModerationContext
from tests.conftest import ai_settings
from tests.fake_openai import FakeOpenAI
from tests.helpers import Api, User, listen_live
from tests.test_ai import open_session

MISSING = "00000000-0000-0000-0000-000000000000"


def principal_of(user: User, *, role: str = "user") -> Principal:
    return Principal(
        user_id=uuid.UUID(user.id),
        session_id=uuid.UUID(user.session_id),
        username=user.username,
        email=user.email,
        role=role,
        is_premium=False,
    )


async def test_a_held_message_is_not_delivered_and_takes_no_sequence(make_client: Any) -> None:
    api = await make_client(moderation_blocked_words=("casino", "free money"))
    organizer, ann, bob = [await api.register() for _ in range(3)]
    session_id = await open_session(api, organizer, ann, bob)
    room = f"session:{session_id}"
    watch = await listen_live(api, bob, room)
    live = await api.live(ann)
    await live.join(room)

    with pytest.raises(LiveError) as info:
        await live.send(room, "Join my CASINO tonight", cid="c-1")
    error = info.value.frame
    assert error.code == "held_for_review"
    assert error.ref == "c-1"
    assert 'blocked word ("casino")' in error.message
    assert error.held is not None
    assert error.held["rule"] == "blocked_words"
    assert error.held["status"] == "pending"
    await watch.nothing_more("message")

    # the next delivered message gets sequence 1: held content never took one
    ack = await live.send(room, "Shall we start with chapter 2?")
    assert ack.seq == 1
    assert (await watch.next("message"))["seq"] == 1

    # the same over REST: 422 naming the field, with the held item
    rest = await api.post(
        f"/api/sessions/{session_id}/messages", ann, json={"content": "get FREE   money now"}
    )
    assert rest.status == 422
    assert rest.body["error"]["code"] == "held_for_review"
    assert rest.error_field() == "body"
    assert rest.body["error"]["held"]["reason"] == 'it contains a blocked word ("free money")'
    # a retried send (same cid) is held once
    with pytest.raises(LiveError) as again:
        await live.send(room, "Join my CASINO tonight", cid="c-1")
    assert again.value.frame.held == error.held
    mine = await api.get("/api/moderation/held?mine=true", ann)
    assert len(mine.body["items"]) == 2
    # the socket survived and still works
    assert (await live.send(room, "still here")).seq == 2


async def test_reviewers_approve_and_reject_held_messages(make_client: Any) -> None:
    api = await make_client(moderation_blocked_words=("casino",))
    organizer, ann, bob, stranger = [await api.register() for _ in range(4)]
    session_id = await open_session(api, organizer, ann, bob)
    room = f"session:{session_id}"
    watch = await listen_live(api, bob, room)
    inbox = await listen_live(api, ann, f"user:{ann.id}")
    live = await api.live(ann)
    await live.join(room)
    assert (await live.send(room, "hello all")).seq == 1
    assert (await watch.next("message"))["seq"] == 1
    for text, cid in (("casino night?", "h-1"), ("casino again", "h-2")):
        with pytest.raises(LiveError):
            await live.send(room, text, cid=cid)

    listed = await api.get(f"/api/moderation/held?sessionId={session_id}", organizer)
    assert listed.status == 200, listed.body
    items = {i["content"]: i for i in listed.body["items"]}
    assert set(items) == {"casino night?", "casino again"}
    held = items["casino night?"]
    assert held["contentType"] == "message"
    assert held["authorId"] == ann.id
    assert held["authorUsername"] == ann.username
    assert held["sessionId"] == session_id
    assert held["status"] == "pending"
    assert held["rule"] == "blocked_words"
    assert held["snapshot"]["cid"] == "h-1"
    # the organizer's own queue shows it without a filter; others see nothing to review
    assert len((await api.get("/api/moderation/held", organizer)).body["items"]) == 2
    assert (await api.get("/api/moderation/held", bob)).body["items"] == []
    refused = await api.get(f"/api/moderation/held?sessionId={session_id}", bob)
    assert refused.status == 403
    assert refused.body["error"]["code"] == "not_a_reviewer"
    assert (await api.get(f"/api/moderation/held?sessionId={MISSING}", bob)).status == 404
    # the author may look at their item; nobody else but reviewers knows it exists
    assert (await api.get(f"/api/moderation/held/{held['id']}", ann)).status == 200
    assert (await api.get(f"/api/moderation/held/{held['id']}", stranger)).status == 404
    assert (await api.post(f"/api/moderation/held/{held['id']}/approve", stranger)).status == 404
    own = await api.post(f"/api/moderation/held/{held['id']}/approve", ann)
    assert own.status == 403
    assert own.body["error"]["code"] == "not_a_reviewer"
    assert (await api.post(f"/api/moderation/held/{MISSING}/approve", organizer)).status == 404
    assert (await api.post("/api/moderation/held/x/approve", organizer)).status == 404

    # approving publishes it as a normal message with the room's next sequence number
    approved = await api.post(
        f"/api/moderation/held/{held['id']}/approve", organizer, json={"reason": "a quiz night"}
    )
    assert approved.status == 200, approved.body
    assert approved.body["status"] == "approved"
    assert approved.body["reviewerId"] == organizer.id
    frame = await watch.next("message")
    assert frame["seq"] == 2
    assert frame["body"] == "casino night?"
    assert frame["cid"] == "h-1"
    assert frame["sender"] == {"id": ann.id, "username": ann.username}
    assert approved.body["publishedId"] == frame["id"]
    note = await inbox.next("notification")
    assert note["type"] == "moderation_approved"
    assert note["message"] == "a quiz night"
    again = await api.post(f"/api/moderation/held/{held['id']}/approve", organizer)
    assert again.status == 409
    assert again.body["error"]["code"] == "already_reviewed"
    # the author's retry of that cid is now the stored message, not a new hold
    ack = await live.send(room, "casino night?", cid="h-1")
    assert ack.duplicate
    assert ack.seq == 2

    other = items["casino again"]["id"]
    long_reason = await api.post(
        f"/api/moderation/held/{other}/reject", organizer, json={"reason": "x" * 501}
    )
    assert long_reason.status == 422
    assert long_reason.error_field() == "reason"
    rejected = await api.post(
        f"/api/moderation/held/{other}/reject", organizer, json={"reason": "no gambling talk"}
    )
    assert rejected.status == 200
    assert rejected.body["status"] == "rejected"
    assert rejected.body["reviewNote"] == "no gambling talk"
    note = await inbox.next("notification")
    assert note["type"] == "moderation_rejected"
    assert note["message"] == "no gambling talk"
    await watch.nothing_more("message")
    assert (await api.post(f"/api/moderation/held/{other}/approve", organizer)).status == 409
    with pytest.raises(LiveError) as info:
        await live.send(room, "casino again", cid="h-2")
    assert "rejected by a moderator" in info.value.frame.message

    statuses = await api.get(f"/api/moderation/held?sessionId={session_id}&status=all", organizer)
    assert sorted(i["status"] for i in statuses.body["items"]) == ["approved", "rejected"]
    pending = await api.get(f"/api/moderation/held?sessionId={session_id}", organizer)
    assert pending.body["items"] == []
    bad = await api.get("/api/moderation/held?status=maybe", organizer)
    assert bad.status == 422
    assert bad.error_field() == "status"
    bad = await api.get("/api/moderation/held?kind=video", organizer)
    assert bad.status == 422
    assert bad.error_field() == "kind"
    bad = await api.get("/api/moderation/held?limit=0", organizer)
    assert bad.status == 422
    assert bad.error_field() == "limit"


async def test_platform_and_pod_moderators_review_their_scope(
    make_client: Any, db: asyncpg.Connection
) -> None:
    api = await make_client(moderation_blocked_words=("casino",))
    owner, mod, member, platform = [await api.register() for _ in range(4)]
    pod = (await api.create_pod(owner))["id"]
    for user in (mod, member):
        assert (await api.post(f"/api/pods/{pod}/join", user)).status == 200
    assert (
        await api.put(f"/api/pods/{pod}/members/{mod.id}", owner, json={"role": "moderator"})
    ).status == 200
    await db.execute("UPDATE users SET role = 'moderator' WHERE id = $1", uuid.UUID(platform.id))
    resp = await api.post(
        "/api/sessions",
        member,
        json={
            "title": "Pod session",
            "sessionType": "pod",
            "podId": pod,
            "startTime": "2030-01-01T10:00:00Z",
            "endTime": "2030-01-01T11:00:00Z",
        },
    )
    session_id = resp.body["id"]
    held = await api.post(
        f"/api/sessions/{session_id}/messages", member, json={"content": "casino?"}
    )
    assert held.status == 422
    held_id = held.body["error"]["held"]["id"]

    by_pod = await api.get(f"/api/moderation/held?podId={pod}", mod)
    assert [i["id"] for i in by_pod.body["items"]] == [held_id]
    assert by_pod.body["items"][0]["podId"] == pod
    assert [i["id"] for i in (await api.get("/api/moderation/held", mod)).body["items"]] == [
        held_id
    ]
    denied = await api.get(f"/api/moderation/held?podId={pod}", member)
    assert denied.status == 403
    assert denied.body["error"]["code"] == "insufficient_role"
    everything = await api.get("/api/moderation/held", platform)
    assert held_id in [i["id"] for i in everything.body["items"]]
    rejected = await api.post(f"/api/moderation/held/{held_id}/reject", platform)
    assert rejected.status == 200
    assert rejected.body["reviewerId"] == platform.id


async def test_link_spam_and_repeats_are_held(make_client: Any) -> None:
    api = await make_client(moderation_max_links=2)
    organizer, ann = await api.register(), await api.register()
    session_id = await open_session(api, organizer, ann)
    room = f"session:{session_id}"
    live = await api.live(ann)
    await live.join(room)
    spam = "see https://a.example/x www.b.example http://c.example/y"
    with pytest.raises(LiveError) as info:
        await live.send(room, spam)
    assert held_of(info)["rule"] == "link_spam"
    assert "3 links; at most 2" in info.value.frame.message
    assert (await live.send(room, "two links: https://a.example www.b.example")).seq == 1

    for _ in range(5):  # short replies may repeat freely
        await live.send(room, "ok!")
    text = "Does anyone have the answers for sheet 4?"
    await live.send(room, text, cid="r-1")
    await live.send(room, text, cid="r-1")  # a retry is the same message, not a repeat
    await live.send(room, text.upper(), cid="r-2")
    with pytest.raises(LiveError) as info:
        await live.send(room, f"  {text}  ", cid="r-3")
    assert held_of(info)["rule"] == "repeated_content"
    # another author saying the same is fine
    live2 = await api.live(organizer)
    await live2.join(room)
    assert (await live2.send(room, text)).seq > 0


async def test_openai_moderation_flags_and_falls_back_to_local_rules(
    make_client: Any, fake_ai: FakeOpenAI
) -> None:
    """CHAT_AI_MODERATION=before: a message waits for the OpenAI check and is held if flagged
    (`after`, the default, is in test_chat_moderation.py)."""
    api = await make_client(
        **ai_settings(fake_ai, moderation_blocked_words=("casino",), chat_ai_moderation="before")
    )
    organizer, ann = await api.register(), await api.register()
    session_id = await open_session(api, organizer, ann)
    room = f"session:{session_id}"
    live = await api.live(ann)
    await live.join(room)
    assert (await live.send(room, "nice to meet you all")).seq == 1
    assert "nice to meet you all" in fake_ai.moderation_inputs
    with pytest.raises(LiveError) as info:
        await live.send(room, "I will FLAGME and HURTTHEM")
    held = held_of(info)
    assert held["rule"] == "openai"
    assert held["categories"] == ["harassment", "violence"]
    assert "automated moderation flagged it (harassment, violence)" in info.value.frame.message
    # local rules decide first, without asking upstream
    calls = len(fake_ai.moderation_inputs)
    with pytest.raises(LiveError):
        await live.send(room, "casino")
    assert len(fake_ai.moderation_inputs) == calls
    # the endpoint failing or hanging does not stop the chat: the local verdict stands
    fake_ai.moderation_mode = "error"
    assert (await live.send(room, "still chatting FLAGME")).seq == 2
    fake_ai.moderation_mode = "slow"  # longer than MODERATION_TIMEOUT (0.5 s here)
    assert (await live.send(room, "and now?")).seq == 3
    with pytest.raises(LiveError):
        await live.send(room, "casino")  # local rules still hold
    metrics = (await api.metrics()).body
    assert b'peerspark_moderation_verdicts_total{kind="message",outcome="fallback"} 2.0' in metrics
    assert b'outcome="held:openai"' in metrics


async def test_a_question_for_the_room_is_moderated_like_a_message(
    make_client: Any, fake_ai: FakeOpenAI
) -> None:
    api = await make_client(**ai_settings(fake_ai, moderation_blocked_words=("casino",)))
    organizer, ann = await api.register(), await api.register()
    session_id = await open_session(api, organizer, ann)
    watch = await listen_live(api, organizer, f"session:{session_id}")
    calls = len(fake_ai.requests)
    resp = await api.post(
        "/api/ai/chat", ann, json={"message": "best casino strategy?", "sessionId": session_id}
    )
    assert resp.status == 422
    assert resp.body["error"]["code"] == "held_for_review"
    assert resp.error_field() == "message"
    assert len(fake_ai.requests) == calls  # the assistant was not asked
    await watch.nothing_more("event", "ai_started")
    assert (await api.get("/api/ai/usage", ann)).body["used"] == 0
    # privately (no room) the same question is the student's own business
    assert (
        await api.post("/api/ai/chat", ann, json={"message": "best casino strategy?"})
    ).status == 200


# --- posts and comments: the service the feed calls ---------------------------------------------


async def test_more_than_ten_posts_an_hour_are_held(api: Api, db: asyncpg.Connection) -> None:
    moderation = api.app[MODERATION]
    ann = await api.register()
    author = principal_of(ann)
    pod = (await api.create_pod(ann))["id"]

    async def add_posts(n: int, minutes_ago: int) -> None:
        for i in range(n):
            await db.execute(
                """INSERT INTO posts (author_id, pod_id, content, created_at)
                   VALUES ($1, $2, $3, NOW() - make_interval(mins => $4))""",
                uuid.UUID(ann.id),
                uuid.UUID(pod),
                f"post number {i} about topic {uuid.uuid4()}",
                minutes_ago,
            )

    await add_posts(5, 90)  # older than an hour: they do not count
    await add_posts(9, 5)
    fresh = "A completely new question about integrals"
    assert (await moderation.review(author, "post", fresh)).allowed
    await add_posts(1, 1)
    verdict = await moderation.review(
        author, "post", fresh, ModerationContext(pod_id=uuid.UUID(pod))
    )
    assert not verdict.allowed
    assert verdict.rule == "post_rate"
    assert verdict.reason == "you posted more than 10 times in the last hour"
    # other kinds are not counted by this rule
    assert (await moderation.review(author, "comment", fresh)).allowed


async def test_duplicate_posts_and_comments_are_held_and_publishers_get_approved_ones(
    api: Api, db: asyncpg.Connection
) -> None:
    moderation = api.app[MODERATION]
    ann, owner = await api.register(), await api.register()
    pod = (await api.create_pod(owner))["id"]
    assert (await api.post(f"/api/pods/{pod}/join", ann)).status == 200
    author = principal_of(ann)
    post_id = await db.fetchval(
        "INSERT INTO posts (author_id, pod_id, content) VALUES ($1, $2, $3) RETURNING id",
        uuid.UUID(ann.id),
        uuid.UUID(pod),
        "Who wants to study linear algebra together on Friday evening?",
    )
    await db.execute(
        "INSERT INTO comments (post_id, author_id, content) VALUES ($1, $2, $3)",
        post_id,
        uuid.UUID(ann.id),
        "I can bring the practice sheets from last week",
    )
    repeat = await moderation.review(
        author, "post", "who wants to study linear algebra together on friday evening??"
    )
    assert not repeat.allowed
    assert repeat.rule == "repeated_content"
    comment = await moderation.review(
        author, "comment", "I can bring the practice sheets from last week!"
    )
    assert not comment.allowed
    assert comment.rule == "repeated_content"

    context = ModerationContext(pod_id=uuid.UUID(pod))
    snapshot = {"content": "who wants to study linear algebra together on friday evening??"}
    held = await moderation.hold(author, "post", snapshot["content"], snapshot, repeat, context)
    assert held.status == "pending"
    assert held.pod_id == uuid.UUID(pod)
    error = held.error()
    assert error.status == 422
    assert error.held["id"] == str(held.id)

    # an area's own publisher stores what a moderator approves
    published: list[HeldContent] = []

    async def publish_post(item: HeldContent) -> uuid.UUID:
        published.append(item)
        new_id: uuid.UUID = await db.fetchval(
            "INSERT INTO posts (author_id, pod_id, content) VALUES ($1, $2, $3) RETURNING id",
            item.author_id,
            item.pod_id,
            item.snapshot["content"],
        )
        return new_id

    moderation.register_publisher("post", publish_post)
    approved = await api.post(f"/api/moderation/held/{held.id}/approve", owner)
    assert approved.status == 200, approved.body
    assert [p.id for p in published] == [held.id]
    assert published[0].author_id == uuid.UUID(ann.id)
    assert (
        await db.fetchval(
            "SELECT content FROM posts WHERE id = $1", uuid.UUID(approved.body["publishedId"])
        )
        == snapshot["content"]
    )

    # a publisher that fails leaves the item pending for another try
    async def broken(item: HeldContent) -> uuid.UUID:
        raise RuntimeError("feed is down")

    moderation.register_publisher("comment", broken)
    held_comment = await moderation.hold(
        author, "comment", "dup", {"content": "dup"}, comment, context
    )
    failed = await api.post(f"/api/moderation/held/{held_comment.id}/approve", owner)
    assert failed.status == 500
    again = await api.get(f"/api/moderation/held/{held_comment.id}", owner)
    assert again.body["status"] == "pending"
    assert again.body["reviewerId"] is None


async def test_posts_and_comments_are_held_and_published_by_the_feed_on_approval(
    make_client: Any,
) -> None:
    api = await make_client(moderation_blocked_words=("casino",))
    owner, ann = await api.register(), await api.register()
    pod = (await api.create_pod(owner))["id"]
    assert (await api.post(f"/api/pods/{pod}/join", ann)).status == 200
    room = await listen_live(api, owner, f"pod:{pod}")
    inbox = await listen_live(api, ann, f"user:{ann.id}")

    held = await api.post(
        "/api/posts", ann, json={"content": "Best casino tips for exam week", "podId": pod}
    )
    assert held.status == 422
    assert held.body["error"]["code"] == "held_for_review"
    assert held.error_field() == "content"
    item_id = held.body["error"]["held"]["id"]
    feed = await api.get(f"/api/feed?podId={pod}", owner)
    assert feed.body["posts"] == []
    await room.nothing_more("event", "post_created")

    queue = await api.get(f"/api/moderation/held?podId={pod}", owner)
    assert [(i["id"], i["contentType"]) for i in queue.body["items"]] == [(item_id, "post")]
    approved = await api.post(f"/api/moderation/held/{item_id}/approve", owner)
    assert approved.status == 200, approved.body
    post_id = approved.body["publishedId"]
    post = await api.get(f"/api/posts/{post_id}", owner)
    assert post.status == 200
    assert post.body["content"] == "Best casino tips for exam week"
    assert post.body["author"]["id"] == ann.id
    created = await room.next("event", "post_created")
    assert created["data"]["id"] == post_id
    assert (await inbox.next("notification"))["type"] == "moderation_approved"

    # a comment: held, then rejected, so it is never stored
    clean = await api.post("/api/posts", owner, json={"content": "Study plan?", "podId": pod})
    assert clean.status == 201
    comment = await api.post(
        f"/api/posts/{clean.body['id']}/comments", ann, json={"content": "casino after?"}
    )
    assert comment.status == 422
    assert comment.body["error"]["code"] == "held_for_review"
    comment_item = comment.body["error"]["held"]["id"]
    rejected = await api.post(
        f"/api/moderation/held/{comment_item}/reject", owner, json={"reason": "off topic"}
    )
    assert rejected.status == 200
    comments = await api.get(f"/api/posts/{clean.body['id']}/comments", owner)
    assert comments.body["comments"] == []
    assert (await inbox.next("notification"))["type"] == "moderation_rejected"
    # an approved comment lands in the thread
    again = await api.post(
        f"/api/posts/{clean.body['id']}/comments", ann, json={"content": "casino quiz night"}
    )
    ok = await api.post(f"/api/moderation/held/{again.body['error']['held']['id']}/approve", owner)
    assert ok.status == 200
    thread = await api.get(f"/api/posts/{clean.body['id']}/comments", owner)
    assert [c["content"] for c in thread.body["comments"]] == ["casino quiz night"]


async def test_approving_content_that_can_no_longer_be_stored_is_a_conflict(
    make_client: Any,
) -> None:
    api = await make_client(moderation_blocked_words=("casino",))
    owner, ann = await api.register(), await api.register()
    pod = (await api.create_pod(owner))["id"]
    await api.post(f"/api/pods/{pod}/join", ann)
    held = await api.post("/api/posts", ann, json={"content": "casino night", "podId": pod})
    item = held.body["error"]["held"]["id"]
    assert (await api.delete(f"/api/pods/{pod}/leave", ann)).status == 204
    approve = await api.post(f"/api/moderation/held/{item}/approve", owner)
    assert approve.status == 409, approve.body
    error = approve.body["error"]
    assert error["code"] == "cannot_publish"
    assert "not a member of this pod" in error["message"]
    assert (await api.get(f"/api/moderation/held/{item}", owner)).body["status"] == "pending"


def held_of(info: pytest.ExceptionInfo[LiveError]) -> dict[str, Any]:
    """The held item an `error` frame carries (held_for_review)."""
    held = info.value.frame.held
    assert held is not None, info.value.frame
    return held
