"""The AI study assistant through HTTP (and a live room), against a local OpenAI-compatible
server that the real `openai` SDK talks to: answers and conversations, streaming, grounded
answers, the Socratic tutor, history budgets, quotas and limits, and upstream failures."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from tests import helpers
from tests.conftest import ai_settings
from tests.fake_openai import FakeOpenAI
from tests.helpers import Api, User, listen_live

MISSING = "00000000-0000-0000-0000-000000000000"


async def sse(api: Api, user: User, body: dict[str, Any], *, accept: bool = True) -> Any:
    """POST /api/ai/chat as a stream: (status, headers, [(event, data), ...])."""
    headers = dict(user.auth)
    if accept:
        headers["Accept"] = "text/event-stream"
    async with api.client.post("/api/ai/chat", json=body, headers=headers) as resp:
        raw = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, resp.headers, json.loads(raw)
        events = []
        for block in raw.decode().split("\n\n"):
            if not block.strip():
                continue
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((fields["event"], json.loads(fields["data"])))
        return resp.status, resp.headers, events


async def open_session(api: Api, organizer: User, *people: User) -> str:
    """A group session's id (not its room name)."""
    room = await helpers.open_session(api, organizer, *people, title="Group study")
    return room.partition(":")[2]


# --- answers and conversations -----------------------------------------------------------------


async def test_chat_answers_stores_and_counts(
    ai_api: Api, fake_ai: FakeOpenAI, db: asyncpg.Connection
) -> None:
    ann = await ai_api.register()
    resp = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={
            "message": "What is a derivative?",
            "context": {"type": "general", "subject": "Math"},
        },
    )
    assert resp.status == 200, resp.body
    body = resp.body
    sent = fake_ai.requests[-1]
    assert sent["model"] == "test-model"
    assert sent["max_tokens"] == 1000
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "AI study assistant for PeerSpark" in sent["messages"][0]["content"]
    assert "The subject is Math." in sent["messages"][0]["content"]
    assert body["message"] == "Here is what I can tell you about What is a derivative?."
    usage = fake_ai._usage(sent, body["message"])
    assert body["tokensUsed"] == usage["total_tokens"]
    assert body["suggestions"] is None
    assert body["citations"] == []
    limit = int(resp.headers["X-AI-Tokens-Limit"])
    assert limit == 20000
    assert int(resp.headers["X-AI-Tokens-Remaining"]) == limit - usage["total_tokens"]
    assert 0 < int(resp.headers["X-AI-Tokens-Reset"]) <= 86400

    # the conversation, its messages, and every counter
    listed = await ai_api.get("/api/ai/conversations", ann)
    assert listed.status == 200
    [conv] = listed.body["conversations"]
    assert conv["id"] == body["conversationId"]
    assert conv["conversationType"] == "general"
    assert conv["messageCount"] == 2
    assert conv["title"] == "What is a derivative?"
    assert conv["tokensUsed"] == body["tokensUsed"]
    detail = await ai_api.get(f"/api/ai/conversations/{body['conversationId']}", ann)
    assert detail.status == 200
    question, answer = detail.body["messages"]
    assert (question["role"], question["content"]) == ("user", "What is a derivative?")
    assert answer["id"] == body["messageId"]
    assert answer["role"] == "assistant"
    assert answer["content"] == body["message"]
    assert answer["tokensUsed"] == body["tokensUsed"]
    assert answer["metadata"]["promptTokens"] == usage["prompt_tokens"]
    uid = uuid.UUID(ann.id)
    asked = await db.fetch(
        "SELECT properties, value FROM analytics_events WHERE user_id = $1 AND event = 'ai_query'",
        uid,
    )
    assert len(asked) == 1  # the ai_query analytics event, written with the answer
    assert json.loads(asked[0]["properties"])["tokens"] == body["tokensUsed"]
    assert asked[0]["value"] == body["tokensUsed"]
    assert (
        await db.fetchval("SELECT tokens FROM ai_usage_daily WHERE user_id = $1", uid)
        == body["tokensUsed"]
    )

    # continuing sends the history before the new question
    again = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "And an integral?", "conversationId": body["conversationId"]},
    )
    assert again.status == 200
    assert again.body["conversationId"] == body["conversationId"]
    roles = [(m["role"], m["content"]) for m in fake_ai.requests[-1]["messages"]]
    assert roles[1:] == [
        ("user", "What is a derivative?"),
        ("assistant", body["message"]),
        ("user", "And an integral?"),
    ]
    assert "The subject is Math." in roles[0][1]  # the conversation's context carries on
    metrics = await ai_api.metrics()
    assert b'peerspark_ai_calls_total{endpoint="chat",outcome="ok"} 2.0' in metrics.body


async def test_conversations_are_private_paged_and_deletable(
    ai_api: Api, db: asyncpg.Connection
) -> None:
    ann, bob = await ai_api.register(), await ai_api.register()
    ids = []
    for kind in ("general", "doubt_solving", "general"):
        resp = await ai_api.post(
            "/api/ai/chat", ann, json={"message": f"{kind} q", "context": {"type": kind}}
        )
        assert resp.status == 200, resp.body
        ids.append(resp.body["conversationId"])
    first = await ai_api.get("/api/ai/conversations?limit=2", ann)
    assert [c["id"] for c in first.body["conversations"]] == [ids[2], ids[1]]
    rest = await ai_api.get(f"/api/ai/conversations?limit=2&cursor={first.body['nextCursor']}", ann)
    assert [c["id"] for c in rest.body["conversations"]] == [ids[0]]
    assert rest.body["nextCursor"] is None
    doubts = await ai_api.get("/api/ai/conversations?type=doubt_solving", ann)
    assert [c["id"] for c in doubts.body["conversations"]] == [ids[1]]
    bad = await ai_api.get("/api/ai/conversations?type=gossip", ann)
    assert bad.status == 422
    assert bad.error_field() == "type"
    bad = await ai_api.get("/api/ai/conversations?cursor=nonsense", ann)
    assert bad.status == 422
    assert bad.error_field() == "cursor"

    # someone else's conversation does not exist for you
    assert (await ai_api.get(f"/api/ai/conversations/{ids[0]}", bob)).status == 404
    assert (await ai_api.delete(f"/api/ai/conversations/{ids[0]}", bob)).status == 404
    theirs = await ai_api.post(
        "/api/ai/chat", bob, json={"message": "hi", "conversationId": ids[0]}
    )
    assert theirs.status == 404
    assert (await ai_api.get("/api/ai/conversations", bob)).body["conversations"] == []
    assert (await ai_api.get("/api/ai/conversations/not-a-uuid", ann)).status == 404
    assert (await ai_api.get(f"/api/ai/conversations/{MISSING}", ann)).status == 404
    assert (await ai_api.get("/api/ai/conversations")).status == 401

    # deleting removes the messages but gives no tokens back
    used = await db.fetchval(
        "SELECT tokens FROM ai_usage_daily WHERE user_id = $1", uuid.UUID(ann.id)
    )
    assert (await ai_api.delete(f"/api/ai/conversations/{ids[0]}", ann)).status == 204
    assert (await ai_api.get(f"/api/ai/conversations/{ids[0]}", ann)).status == 404
    assert (await ai_api.delete(f"/api/ai/conversations/{ids[0]}", ann)).status == 404
    assert (
        await db.fetchval(
            "SELECT count(*) FROM ai_messages WHERE conversation_id = $1", uuid.UUID(ids[0])
        )
        == 0
    )
    after = await ai_api.get("/api/ai/usage", ann)
    assert after.body["used"] == used
    assert after.body["limit"] == 20000


async def test_bad_input_names_the_field(ai_api: Api) -> None:
    ann = await ai_api.register()
    conv = await ai_api.post(
        "/api/ai/chat", ann, json={"message": "q", "context": {"type": "explanation"}}
    )
    cases: list[tuple[str, Any, int, str | None]] = [
        ("/api/ai/chat", {"message": "   "}, 422, "message"),
        ("/api/ai/chat", {"message": "x" * 8001}, 422, "message"),
        ("/api/ai/chat", {}, 422, "message"),
        ("/api/ai/chat", {"message": "q", "mood": "happy"}, 422, "mood"),
        ("/api/ai/chat", {"message": "q", "context": {"type": "gossip"}}, 422, "context.type"),
        ("/api/ai/chat", {"message": "q", "conversationId": "abc"}, 422, "conversationId"),
        ("/api/ai/chat", {"message": "q", "context": {"podId": "x"}}, 422, "context.podId"),
        ("/api/ai/chat", {"message": "q", "context": {"resourceId": 5}}, 422, "context.resourceId"),
        ("/api/ai/chat", {"message": "q", "sessionId": "nope"}, 422, "sessionId"),
        (
            "/api/ai/chat",
            {
                "message": "q",
                "conversationId": conv.body["conversationId"],
                "context": {"type": "general"},
            },
            422,
            "context.type",
        ),
        ("/api/ai/chat", {"message": "q", "context": {"podId": MISSING}}, 404, None),
        ("/api/ai/chat", {"message": "q", "context": {"resourceId": MISSING}}, 404, None),
        ("/api/ai/chat", {"message": "q", "sessionId": MISSING}, 404, None),
        ("/api/ai/chat", {"message": "q", "conversationId": MISSING}, 404, None),
        ("/api/ai/study-plan", {"subject": "Math"}, 422, "goals"),
        (
            "/api/ai/study-plan",
            {
                "subject": "Math",
                "goals": [],
                "timeframe": "a month",
                "currentLevel": "beginner",
                "availableTime": 5,
            },
            422,
            "goals",
        ),
        (
            "/api/ai/study-plan",
            {
                "subject": "Math",
                "goals": ["pass"],
                "timeframe": "a month",
                "currentLevel": "beginner",
                "availableTime": 0,
            },
            422,
            "availableTime",
        ),
        ("/api/ai/explain", {"topic": "limits", "subject": "Math", "level": "guru"}, 422, "level"),
        (
            "/api/ai/explain",
            {"topic": "limits", "subject": "Math", "format": "poem"},
            422,
            "format",
        ),
        ("/api/ai/explain", {"topic": "", "subject": "Math"}, 422, "topic"),
    ]
    for path, body, status, field in cases:
        resp = await ai_api.post(path, ann, json=body)
        assert resp.status == status, (body, resp.body)
        assert resp.error_field() == field, (body, resp.body)
    raw = await ai_api.post(
        "/api/ai/chat", ann, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status == 400


async def test_study_plan_and_explain(ai_api: Api, fake_ai: FakeOpenAI) -> None:
    ann = await ai_api.register()
    plan = await ai_api.post(
        "/api/ai/study-plan",
        ann,
        json={
            "subject": "Calculus",
            "goals": ["pass the final", "understand limits"],
            "timeframe": "6 weeks",
            "currentLevel": "beginner",
            "availableTime": 6,
        },
    )
    assert plan.status == 200, plan.body
    sent = fake_ai.requests[-1]
    assert sent["max_tokens"] == 1500
    assert sent["temperature"] == 0.5
    prompt = sent["messages"][-1]["content"]
    assert "Subject: Calculus" in prompt
    assert "Goals: pass the final, understand limits" in prompt
    assert "Available Time: 6 hours per week" in prompt
    assert "Create personalized study plans" in sent["messages"][0]["content"]
    assert plan.body["message"]
    assert plan.body["tokensUsed"] > 0
    assert "X-AI-Tokens-Remaining" in plan.headers

    explained = await ai_api.post(
        "/api/ai/explain",
        ann,
        json={
            "topic": "the chain rule",
            "subject": "Calculus",
            "level": "beginner",
            "format": "steps",
        },
    )
    assert explained.status == 200, explained.body
    prompt = fake_ai.requests[-1]["messages"][-1]["content"]
    assert "Explain the chain rule (Calculus)" in prompt
    assert "numbered sequence" in prompt
    assert explained.body["suggestions"]

    types = {
        c["id"]: c["conversationType"]
        for c in (await ai_api.get("/api/ai/conversations", ann)).body["conversations"]
    }
    assert types == {
        plan.body["conversationId"]: "study_plan",
        explained.body["conversationId"]: "explanation",
    }
    context = (await ai_api.get(f"/api/ai/conversations/{plan.body['conversationId']}", ann)).body
    assert context["conversation"]["context"]["goals"] == ["pass the final", "understand limits"]
    # a plan can be discussed further as a chat in its conversation
    more = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "Make week 1 lighter", "conversationId": plan.body["conversationId"]},
    )
    assert more.status == 200
    assert [m["role"] for m in fake_ai.requests[-1]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


# --- streaming ---------------------------------------------------------------------------------


async def test_streaming_over_server_sent_events(ai_api: Api, fake_ai: FakeOpenAI) -> None:
    ann = await ai_api.register()
    status, headers, events = await sse(ai_api, ann, {"message": "Explain vectors please"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert fake_ai.requests[-1]["stream"] is True
    kinds = [e for e, _ in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    assert len(kinds) > 4
    start, done = events[0][1], events[-1][1]
    deltas = [d for e, d in events if e == "delta"]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    text = "".join(d["delta"] for d in deltas)
    assert text == done["message"] == "Here is what I can tell you about Explain vectors please."
    assert done["conversationId"] == start["conversationId"]
    assert done["messageId"] == start["messageId"]
    usage = fake_ai._usage(fake_ai.requests[-1], text)
    assert done["tokensUsed"] == usage["total_tokens"]
    assert done["quota"]["remaining"] == 20000 - usage["total_tokens"]
    assert int(headers["X-AI-Tokens-Limit"]) == 20000

    stored = await ai_api.get(f"/api/ai/conversations/{start['conversationId']}", ann)
    answer = stored.body["messages"][-1]
    assert answer["content"] == text
    assert answer["tokensUsed"] == usage["total_tokens"]
    assert answer["metadata"]["streamed"] is True

    # "stream": true works without the Accept header
    status, _, events = await sse(ai_api, ann, {"message": "again", "stream": True}, accept=False)
    assert status == 200
    assert events[-1][0] == "done"
    # refusals come before the stream starts, as JSON
    status, _, body = await sse(ai_api, ann, {"message": ""})
    assert status == 422
    assert body["error"]["details"][0]["field"] == "message"


async def test_an_upstream_without_usage_is_charged_by_estimate(
    ai_api: Api, fake_ai: FakeOpenAI
) -> None:
    ann = await ai_api.register()
    fake_ai.include_usage = False
    status, _, events = await sse(ai_api, ann, {"message": "count me"})
    assert status == 200
    done = events[-1][1]
    assert done["tokensUsed"] > 0
    stored = await ai_api.get(f"/api/ai/conversations/{done['conversationId']}", ann)
    assert stored.body["messages"][-1]["metadata"]["estimatedTokens"] is True
    usage = await ai_api.get("/api/ai/usage", ann)
    assert usage.body["used"] == done["tokensUsed"]


async def test_streaming_into_a_study_session_room(ai_api: Api, fake_ai: FakeOpenAI) -> None:
    organizer, ann, bob, stranger = [await ai_api.register() for _ in range(4)]
    session_id = await open_session(ai_api, organizer, ann, bob)
    room = f"session:{session_id}"
    watch = await listen_live(ai_api, bob, room)
    first = await (await ai_api.live(organizer)).join(room)
    assert first.last_seq == 0

    resp = await ai_api.post(
        "/api/ai/chat", ann, json={"message": "What is osmosis?", "sessionId": session_id}
    )
    assert resp.status == 200, resp.body
    answer = resp.body["message"]
    assert resp.body["sessionMessageSeq"] == 1

    started = await watch.next("event", "ai_started")
    assert started["data"]["askedBy"] == {"id": ann.id, "username": ann.username}
    assert started["data"]["question"] == "What is osmosis?"
    assert started["data"]["messageId"] == resp.body["messageId"]
    pieces: list[str] = []
    while True:
        frame = await watch.next()
        if frame["t"] == "event" and frame["kind"] == "ai_delta":
            assert frame["data"]["index"] == len(pieces)
            pieces.append(frame["data"]["delta"])
        elif frame["t"] == "message":
            break
    assert "".join(pieces) == answer
    # the complete answer is a stored message of the room, with the next sequence number
    assert frame["kind"] == "ai"
    assert frame["body"] == answer
    assert frame["seq"] == 1
    assert frame["sender"]["id"] == ann.id
    assert frame["meta"]["conversationId"] == resp.body["conversationId"]
    assert frame["meta"]["question"] == "What is osmosis?"
    done = await watch.next("event", "ai_done")
    assert done["data"]["seq"] == 1
    assert done["data"]["tokensUsed"] == resp.body["tokensUsed"]
    history = await ai_api.get(f"/api/sessions/{session_id}/messages", bob)
    assert [(m["kind"], m["body"]) for m in history.body["messages"]] == [("ai", answer)]
    conv = await ai_api.get(f"/api/ai/conversations/{resp.body['conversationId']}", ann)
    assert conv.body["conversation"]["sessionId"] == session_id

    # streamed to the caller and the room at once
    status, _, events = await sse(
        ai_api, bob, {"message": "And diffusion?", "sessionId": session_id}
    )
    assert status == 200
    assert events[-1][0] == "done"
    assert events[-1][1]["sessionMessageSeq"] == 2
    frame = await watch.next("message")
    assert frame["seq"] == 2
    assert frame["body"] == events[-1][1]["message"]

    # only participants ask in a room; unknown sessions are 404
    refused = await ai_api.post(
        "/api/ai/chat", stranger, json={"message": "hi", "sessionId": session_id}
    )
    assert refused.status == 403
    assert refused.body["error"]["code"] == "not_a_participant"
    await ai_api.post(f"/api/sessions/{session_id}/start", organizer)
    await ai_api.post(f"/api/sessions/{session_id}/end", organizer)
    closed = await ai_api.post("/api/ai/chat", ann, json={"message": "hi", "sessionId": session_id})
    assert closed.status == 409
    assert closed.body["error"]["code"] == "session_closed"


# --- failures ----------------------------------------------------------------------------------


async def test_upstream_dying_mid_stream_stores_nothing(
    ai_api: Api, fake_ai: FakeOpenAI, db: asyncpg.Connection
) -> None:
    organizer, ann = await ai_api.register(), await ai_api.register()
    session_id = await open_session(ai_api, organizer, ann)
    watch = await listen_live(ai_api, organizer, f"session:{session_id}")
    fake_ai.mode = "cut"
    status, _, events = await sse(
        ai_api, ann, {"message": "Tell me about photosynthesis", "sessionId": session_id}
    )
    assert status == 200
    kinds = [e for e, _ in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "error"
    assert "delta" in kinds
    assert "done" not in kinds
    error = events[-1][1]
    assert error["status"] == 502
    assert error["error"]["code"] == "upstream_error"
    assert "could not be reached" in error["error"]["message"]
    failed = await watch.next("event", "ai_error")
    assert failed["data"]["code"] == "upstream_error"
    assert failed["data"]["messageId"] == events[0][1]["messageId"]
    await watch.nothing_more("message")
    # nothing half-written: no conversation, no session message, no tokens charged
    assert (await ai_api.get("/api/ai/conversations", ann)).body["conversations"] == []
    assert (
        await db.fetchval(
            "SELECT last_seq FROM session_seqs WHERE session_id = $1", uuid.UUID(session_id)
        )
        == 0
    )
    assert (await ai_api.get("/api/ai/usage", ann)).body["used"] == 0

    # a stream that ends without saying it finished is not an answer either
    fake_ai.mode = "no_finish"
    status, _, events = await sse(ai_api, ann, {"message": "again"})
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "upstream_error"
    assert (await ai_api.get("/api/ai/conversations", ann)).body["conversations"] == []


async def test_upstream_errors_and_timeouts_are_502_and_504(
    ai_api: Api, fake_ai: FakeOpenAI
) -> None:
    ann = await ai_api.register()
    fake_ai.mode = "error"
    failed = await ai_api.post("/api/ai/chat", ann, json={"message": "hello"})
    assert failed.status == 502
    assert failed.body["error"]["code"] == "upstream_error"
    assert "HTTP 500" in failed.body["error"]["message"]
    fake_ai.mode = "unauthorized"
    failed = await ai_api.post("/api/ai/chat", ann, json={"message": "hello"})
    assert failed.status == 502
    assert failed.body["error"]["code"] == "upstream_auth_failed"
    fake_ai.mode = "slow"  # longer than OPENAI_TIMEOUT (1 s here)
    slow = await ai_api.post("/api/ai/chat", ann, json={"message": "hello"})
    assert slow.status == 504
    assert slow.body["error"]["code"] == "upstream_timeout"
    status, _, events = await sse(ai_api, ann, {"message": "hello"})
    assert status == 200  # the stream had begun when the upstream stalled
    assert events[-1][0] == "error"
    assert events[-1][1]["status"] == 504
    fake_ai.mode = "cut"
    cut = await ai_api.post("/api/ai/chat", ann, json={"message": "hello"})
    assert cut.status == 502
    assert (await ai_api.get("/api/ai/conversations", ann)).body["conversations"] == []
    assert (await ai_api.get("/api/ai/usage", ann)).body["used"] == 0
    fake_ai.mode = "ok"
    assert (await ai_api.post("/api/ai/chat", ann, json={"message": "hello"})).status == 200


async def test_without_a_key_ai_says_it_is_not_configured(
    make_client: Any, fake_ai: FakeOpenAI
) -> None:
    api = await make_client()
    ann = await api.register()
    for path, body in [
        ("/api/ai/chat", {"message": "hi"}),
        ("/api/ai/study-plan", {}),
        ("/api/ai/explain", {"topic": "x", "subject": "y"}),
    ]:
        resp = await api.post(path, ann, json=body)
        assert resp.status == 503, (path, resp.body)
        assert resp.body["error"]["code"] == "ai_not_configured"
        assert "AI is not configured" in resp.body["error"]["message"]
    # history stays readable without a key
    assert (await api.get("/api/ai/conversations", ann)).status == 200
    health = await api.health()
    assert health.status == 200
    assert health.body["services"]["ai"]["status"] == "not_configured"

    off = await make_client(**ai_settings(fake_ai, enable_ai_features=False))
    bob = await off.register()
    resp = await off.post("/api/ai/chat", bob, json={"message": "hi"})
    assert resp.status == 503
    assert resp.body["error"]["code"] == "ai_disabled"
    assert (await off.health()).body["services"]["ai"]["status"] == "disabled"

    on = await make_client(**ai_settings(fake_ai))
    ai = (await on.health()).body["services"]["ai"]
    assert ai["status"] == "healthy"
    assert ai["reachable"] is True
    assert ai["model"] == "test-model"
    fake_ai.models_down = True
    down = await make_client(**ai_settings(fake_ai))
    report = await down.health()
    assert report.status == 200  # AI is optional: the node still serves
    assert report.body["services"]["ai"]["status"] == "unhealthy"


# --- grounded answers --------------------------------------------------------------------------


async def add_resource(
    db: asyncpg.Connection,
    owner: User,
    title: str,
    content: str,
    *,
    pod: str | None = None,
    public: bool = False,
    status: str = "active",
) -> str:
    value = await db.fetchval(
        """INSERT INTO resources (owner_id, pod_id, title, description, resource_type, content,
                                  is_public, status)
           VALUES ($1, $2, $3, $4, 'note', $5, $6, $7) RETURNING id""",
        uuid.UUID(owner.id),
        uuid.UUID(pod) if pod else None,
        title,
        f"Notes: {title}",
        content,
        public,
        status,
    )
    if pod is not None:  # as the vault does: a resource made in a pod is shared with the pod
        await db.execute(
            """INSERT INTO resource_shares (resource_id, shared_with_pod_id, shared_by_id)
               VALUES ($1, $2, $3)""",
            value,
            uuid.UUID(pod),
            uuid.UUID(owner.id),
        )
    return str(value)


async def share(
    db: asyncpg.Connection,
    resource: str,
    by: User,
    *,
    user: User | None = None,
    pod: str | None = None,
) -> None:
    await db.execute(
        """INSERT INTO resource_shares (resource_id, shared_with_user_id, shared_with_pod_id,
                                        shared_by_id) VALUES ($1, $2, $3, $4)""",
        uuid.UUID(resource),
        uuid.UUID(user.id) if user else None,
        uuid.UUID(pod) if pod else None,
        uuid.UUID(by.id),
    )


async def test_grounded_answers_cite_only_what_the_asker_may_read(
    ai_api: Api, fake_ai: FakeOpenAI, db: asyncpg.Connection
) -> None:
    owner, ann, stranger = (
        await ai_api.register(),
        await ai_api.register(),
        await ai_api.register(),
    )
    pod = (await ai_api.create_pod(owner, isPublic=False))["id"]
    code = (await ai_api.post(f"/api/pods/{pod}/invite", owner, json={"userId": ann.id})).body
    joined = await ai_api.post(
        f"/api/pods/{pod}/join", ann, json={"invitationCode": code["invitationCode"]}
    )
    assert joined.status == 200, joined.body
    text = "Photosynthesis turns light into chemical energy; chlorophyll absorbs the light."
    in_pod = await add_resource(db, owner, "Photosynthesis basics", text, pod=pod)
    shared_with_pod = await add_resource(
        db,
        stranger,
        "Chlorophyll and light",
        "Chlorophyll absorbs red and blue light in photosynthesis.",
    )
    await share(db, shared_with_pod, stranger, pod=pod)
    secret = await add_resource(
        db, stranger, "Secret photosynthesis notes", "TOPSECRET photosynthesis chlorophyll trick."
    )
    mine_elsewhere = await add_resource(
        db, stranger, "Photosynthesis for Ann", "Chlorophyll photosynthesis, shared with Ann only."
    )
    await share(db, mine_elsewhere, stranger, user=ann)
    deleted = await add_resource(
        db,
        owner,
        "Old photosynthesis",
        "DELETED chlorophyll photosynthesis.",
        pod=pod,
        status="deleted",
    )
    unrelated = await add_resource(db, owner, "Cell division", "Mitosis and meiosis.", pod=pod)

    resp = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={
            "message": "How does chlorophyll help photosynthesis?",
            "context": {"type": "explanation", "podId": pod},
        },
    )
    assert resp.status == 200, resp.body
    cited = {c["id"]: c for c in resp.body["citations"]}
    assert set(cited) == {in_pod, shared_with_pod}
    assert cited[in_pod]["title"] == "Photosynthesis basics"
    assert "chlorophyll absorbs the light" in cited[in_pod]["passage"]
    labels = sorted(c["label"] for c in resp.body["citations"])
    assert labels == [1, 2]
    assert "[1]" in resp.body["message"]
    assert "[2]" in resp.body["message"]
    system = FakeOpenAI.system_prompt(fake_ai.requests[-1])
    assert f"(resource {in_pod})" in system
    assert f"(resource {shared_with_pod})" in system
    for hidden in (secret, deleted, mine_elsewhere, unrelated):
        assert hidden not in system
    assert "TOPSECRET" not in system
    assert "DELETED" not in system
    stored = await ai_api.get(f"/api/ai/conversations/{resp.body['conversationId']}", ann)
    assert {c["id"] for c in stored.body["messages"][-1]["metadata"]["citations"]} == set(cited)

    # the conversation stays grounded in its pod, as long as the asker may read the pod's notes
    follow = {"message": "And chlorophyll?", "conversationId": resp.body["conversationId"]}
    again = await ai_api.post("/api/ai/chat", ann, json=follow)
    assert {c["id"] for c in again.body["citations"]} == {in_pod, shared_with_pod}
    assert (await ai_api.delete(f"/api/pods/{pod}/leave", ann)).status == 204
    left = await ai_api.post("/api/ai/chat", ann, json=follow)
    assert left.status == 200
    assert left.body["citations"] == []
    assert "(resource " not in FakeOpenAI.system_prompt(fake_ai.requests[-1])

    # naming one resource grounds the answer in it, if the asker may read it
    named = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "Summarise this", "context": {"resourceId": mine_elsewhere}},
    )
    assert named.status == 200
    assert [c["id"] for c in named.body["citations"]] == [mine_elsewhere]
    for hidden in (secret, deleted):
        refused = await ai_api.post(
            "/api/ai/chat",
            ann,
            json={"message": "Summarise this", "context": {"resourceId": hidden}},
        )
        assert refused.status == 404
        assert refused.body["error"]["message"] == "resource not found"
    # a private pod is not there for non-members
    outsider = await ai_api.post(
        "/api/ai/chat", stranger, json={"message": "photosynthesis", "context": {"podId": pod}}
    )
    assert outsider.status == 404
    # a public resource is anyone's to cite
    public = await add_resource(
        db, stranger, "Public photosynthesis", "Open photosynthesis notes.", public=True
    )
    anyone = await ai_api.post(
        "/api/ai/chat", owner, json={"message": "photosynthesis", "context": {"resourceId": public}}
    )
    assert [c["id"] for c in anyone.body["citations"]] == [public]


# --- the Socratic tutor and history ------------------------------------------------------------


async def test_doubt_solving_guides_with_questions_until_asked_for_the_solution(
    ai_api: Api, fake_ai: FakeOpenAI
) -> None:
    ann = await ai_api.register()
    first = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "How do I solve 2x + 3 = 11?", "context": {"type": "doubt_solving"}},
    )
    assert first.status == 200
    system = FakeOpenAI.system_prompt(fake_ai.requests[-1])
    assert "Socratic tutor" in system
    assert "Do not give the final answer" in system
    assert first.body["mode"] == "socratic"
    assert first.body["message"].startswith("Good question. What do you already know")
    assert "Show me the full solution" in first.body["suggestions"]
    conv = first.body["conversationId"]

    hint = await ai_api.post(
        "/api/ai/chat", ann, json={"message": "I subtract 3?", "conversationId": conv}
    )
    assert hint.body["mode"] == "socratic"
    for asking in ("Just show me the full solution please", "ok what is the answer"):
        solved = await ai_api.post(
            "/api/ai/chat", ann, json={"message": asking, "conversationId": conv}
        )
        assert solved.body["mode"] == "solution", asking
        system = FakeOpenAI.system_prompt(fake_ai.requests[-1])
        assert "complete worked solution" in system
        assert "Socratic" not in system
    flagged = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "x = 4?", "conversationId": conv, "showSolution": True},
    )
    assert flagged.body["mode"] == "solution"
    # other conversation types are not tutored
    general = await ai_api.post("/api/ai/chat", ann, json={"message": "How do I solve it?"})
    assert general.body["mode"] is None
    assert "Socratic" not in FakeOpenAI.system_prompt(fake_ai.requests[-1])


async def test_history_is_trimmed_to_the_token_budget(
    make_client: Any, fake_ai: FakeOpenAI
) -> None:
    api = await make_client(**ai_settings(fake_ai, ai_history_tokens=120))
    ann = await api.register()
    fake_ai.reply = "B" * 100  # 25 tokens + 4 per message
    conv = None
    for i in range(6):
        body: dict[str, Any] = {"message": f"Q{i} " + "a" * 96}
        if conv:
            body["conversationId"] = conv
        resp = await api.post("/api/ai/chat", ann, json=body)
        assert resp.status == 200, resp.body
        conv = resp.body["conversationId"]
    sent = fake_ai.requests[-1]["messages"]
    # 120 tokens hold four 29-token messages: the two latest exchanges, then the question
    assert sent[0]["role"] == "system"
    assert [m["content"][:2] for m in sent[1:] if m["role"] == "user"] == ["Q3", "Q4", "Q5"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    # everything is still stored
    detail = await api.get(f"/api/ai/conversations/{conv}", ann)
    assert len(detail.body["messages"]) == 12
    paged = await api.get(f"/api/ai/conversations/{conv}?limit=5", ann)
    assert len(paged.body["messages"]) == 5
    assert paged.body["nextCursor"]
    rest = await api.get(
        f"/api/ai/conversations/{conv}?limit=10&cursor={paged.body['nextCursor']}", ann
    )
    assert len(rest.body["messages"]) == 7
    assert rest.body["nextCursor"] is None


# --- quotas and limits -------------------------------------------------------------------------


async def test_daily_token_quota(
    make_client: Any, fake_ai: FakeOpenAI, db: asyncpg.Connection
) -> None:
    api = await make_client(
        **ai_settings(fake_ai, ai_daily_tokens=400, ai_daily_tokens_premium=5000)
    )
    ann = await api.register()
    first = await api.post("/api/ai/chat", ann, json={"message": "short question"})
    assert first.status == 200
    used = first.body["tokensUsed"]
    assert first.headers["X-AI-Tokens-Limit"] == "400"
    assert first.headers["X-AI-Tokens-Remaining"] == str(400 - used)
    # the answer may only be as long as what is left
    assert fake_ai.requests[-1]["max_tokens"] <= 400 - used

    # spend the rest: refused before the upstream is called, with the reset time
    await db.execute("UPDATE ai_usage_daily SET tokens = 400 WHERE user_id = $1", uuid.UUID(ann.id))
    calls = len(fake_ai.requests)
    spent = await api.post("/api/ai/chat", ann, json={"message": "one more"})
    assert spent.status == 429
    assert spent.body["error"]["code"] == "ai_quota_exceeded"
    assert "midnight UTC" in spent.body["error"]["message"]
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert abs(int(spent.headers["Retry-After"]) - (midnight - now).total_seconds()) < 5
    assert spent.headers["X-AI-Tokens-Remaining"] == "0"
    status, _, body = await sse(api, ann, {"message": "streamed"})
    assert status == 429
    assert body["error"]["code"] == "ai_quota_exceeded"
    plan = await api.post("/api/ai/explain", ann, json={"topic": "limits", "subject": "Math"})
    assert plan.status == 429
    assert len(fake_ai.requests) == calls
    usage = await api.get("/api/ai/usage", ann)
    assert usage.body == {
        "limit": 400,
        "used": 400,
        "remaining": 0,
        "resetsIn": usage.body["resetsIn"],
        "premium": False,
    }

    # too little left for this question: refused too, saying so
    await db.execute("UPDATE ai_usage_daily SET tokens = 380 WHERE user_id = $1", uuid.UUID(ann.id))
    small = await api.post("/api/ai/chat", ann, json={"message": "x" * 200})
    assert small.status == 429
    assert "only 20 of your daily 400" in small.body["error"]["message"]

    # premium users get the larger allowance
    await db.execute("UPDATE users SET is_premium = TRUE WHERE id = $1", uuid.UUID(ann.id))
    premium = await api.post("/api/ai/chat", ann, json={"message": "one more"})
    assert premium.status == 200
    assert premium.headers["X-AI-Tokens-Limit"] == "5000"
    assert (await api.get("/api/ai/usage", ann)).body["premium"] is True


async def test_at_most_so_many_ai_questions_an_hour(make_client: Any, fake_ai: FakeOpenAI) -> None:
    api = await make_client(**ai_settings(fake_ai, ai_queries_per_hour=2))
    ann, bob = await api.register(), await api.register()
    for _ in range(2):
        assert (await api.post("/api/ai/chat", ann, json={"message": "q"})).status == 200
    limited = await api.post("/api/ai/explain", ann, json={"topic": "t", "subject": "s"})
    assert limited.status == 429
    assert limited.body["error"]["code"] == "rate_limited"
    assert 3500 <= int(limited.headers["Retry-After"]) <= 3600
    assert (await api.post("/api/ai/chat", bob, json={"message": "q"})).status == 200


async def test_answers_in_a_room_use_only_what_everyone_there_may_read(
    ai_api: Api, fake_ai: FakeOpenAI, db: asyncpg.Connection
) -> None:
    """The asker may read more than the room: an answer streamed into a session must not
    carry (or cite) the asker's private notes to the other participants."""
    organizer, ann, bob = [await ai_api.register() for _ in range(3)]
    private_pod = (await ai_api.create_pod(ann, isPublic=False))["id"]  # bob is not in it
    secret = await add_resource(
        db, ann, "Secret exam answers", "osmosis answer key: B, D, A", pod=private_pod
    )
    open_notes = await add_resource(
        db, organizer, "Osmosis explained", "Osmosis moves water across membranes.", public=True
    )
    assert (await ai_api.get(f"/api/resources/{secret}", bob)).status == 404
    session_id = await open_session(ai_api, organizer, ann, bob)

    refused = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "osmosis?", "sessionId": session_id, "context": {"podId": private_pod}},
    )
    assert refused.status == 422
    assert refused.error_field() == "context.podId"
    refused = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={"message": "osmosis?", "sessionId": session_id, "context": {"resourceId": secret}},
    )
    assert refused.status == 422
    assert refused.error_field() == "context.resourceId"

    # a conversation grounded in the private pod, continued into the room, cites nothing of it
    private = await ai_api.post(
        "/api/ai/chat", ann, json={"message": "osmosis answer", "context": {"podId": private_pod}}
    )
    assert {c["id"] for c in private.body["citations"]} == {secret}
    into_room = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={
            "message": "osmosis answer",
            "conversationId": private.body["conversationId"],
            "sessionId": session_id,
        },
    )
    assert into_room.status == 200, into_room.body
    assert into_room.body["citations"] == []
    assert "Secret exam answers" not in FakeOpenAI.system_prompt(fake_ai.requests[-1])
    # a public resource is fine to use in the room
    public = await ai_api.post(
        "/api/ai/chat",
        ann,
        json={
            "message": "explain osmosis",
            "sessionId": session_id,
            "context": {"resourceId": open_notes},
        },
    )
    assert [c["id"] for c in public.body["citations"]] == [open_notes]
    history = await ai_api.get(f"/api/sessions/{session_id}/messages", bob)
    cited = [
        c["id"]
        for m in history.body["messages"]
        for c in (m.get("meta") or {}).get("citations", [])
    ]
    assert secret not in cited
    assert open_notes in cited
