"""Decks from your own material, against the fake OpenAI server: a resource the caller may read,
a session's chat, or a pasted text become DRAFT cards citing their source, counted against the
AI quota; the user edits and keeps them. Refusals: AI not configured (503), material the caller
may not read (404), bad input (422), a failing upstream (502, quota given back)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.fake_openai import FakeOpenAI
from tests.helpers import Api, User, open_session

NOTES = "Mitochondria: the powerhouse of the cell\nRibosome: where proteins are made\n"


async def resource(api: Api, owner: User, **fields: Any) -> str:
    body = {"title": "Cell biology", "resourceType": "note", "content": NOTES, **fields}
    resp = await api.post("/api/resources", owner, json=body)
    assert resp.status == 201, resp.body
    return str(resp.body["id"])


async def used_tokens(api: Api, user: User) -> int:
    resp = await api.get("/api/ai/usage", user)
    assert resp.status == 200, resp.body
    return int(resp.body["used"])


async def test_a_resource_becomes_draft_cards_that_cite_it(
    ai_api: Api, fake_ai: FakeOpenAI
) -> None:
    api = ai_api
    me = await api.register()
    rid = await resource(api, me)
    resp = await api.post("/api/decks/generate", me, json={"resourceId": rid, "count": 5})
    assert resp.status == 201, resp.body
    deck, cards = resp.body["deck"], resp.body["cards"]
    assert deck["title"] == "Cell biology"
    assert deck["sourceResourceId"] == rid
    assert [(c["front"], c["back"], c["status"]) for c in cards] == [
        ("What is Mitochondria?", "the powerhouse of the cell", "draft"),
        ("What is Ribosome?", "where proteins are made", "draft"),
    ]
    assert cards[0]["tags"] == ["generated"]
    assert cards[0]["source"] == {"resourceId": rid, "title": "Cell biology"}
    assert resp.body["tokensUsed"] > 0
    assert await used_tokens(api, me) == resp.body["tokensUsed"]
    # the material went to the assistant
    assert "Mitochondria: the powerhouse" in fake_ai.requests[-1]["messages"][-1]["content"]
    # drafts are not studied until kept
    due = await api.get(f"/api/study/due?deckId={deck['id']}", me)
    assert due.body["cards"] == []
    edited = await api.patch(
        f"/api/cards/{cards[0]['id']}", me, json={"back": "makes ATP", "status": "kept"}
    )
    assert edited.status == 200
    assert edited.body["status"] == "kept"
    due = await api.get(f"/api/study/due?deckId={deck['id']}", me)
    assert [c["id"] for c in due.body["cards"]] == [cards[0]["id"]]
    # a draft kept later is offered after the cards kept before it
    added = await api.post(f"/api/decks/{deck['id']}/cards", me, json={"front": "q", "back": "a"})
    kept = await api.post(f"/api/decks/{deck['id']}/keep", me, json={})
    assert kept.body == {"kept": 1}
    due = await api.get(f"/api/study/due?deckId={deck['id']}", me)
    assert [c["id"] for c in due.body["cards"]] == [
        cards[0]["id"],
        added.body["id"],
        cards[1]["id"],
    ]
    listed = await api.get(f"/api/decks/{deck['id']}/cards?status=kept", me)
    assert len(listed.body["cards"]) == 3


async def test_a_citation_is_shown_only_to_those_who_may_read_the_resource(ai_api: Api) -> None:
    api = ai_api
    owner, member = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await api.post(f"/api/pods/{pod['id']}/join", member)
    rid = await resource(api, owner)  # private to the owner
    made = await api.post("/api/decks/generate", owner, json={"resourceId": rid})
    deck_id, card = made.body["deck"]["id"], made.body["cards"][0]["id"]
    assert (
        await api.patch(f"/api/decks/{deck_id}", owner, json={"podId": pod["id"]})
    ).status == 200
    mine = await api.get(f"/api/cards/{card}", owner)
    theirs = await api.get(f"/api/cards/{card}", member)
    assert mine.body["source"]["resourceId"] == rid
    assert theirs.status == 200
    assert theirs.body["source"] is None


async def test_a_sessions_chat_and_a_pasted_text_become_cards(ai_api: Api) -> None:
    api = ai_api
    host, guest, stranger = await api.register(), await api.register(), await api.register()
    room = await open_session(api, host, guest)
    session_id = room.split(":")[1]
    for who, text in ((host, "Osmosis: water moving across a membrane"),
                      (guest, "Diffusion: particles spreading out")):  # fmt: skip
        sent = await api.post(f"/api/sessions/{session_id}/messages", who, json={"content": text})
        assert sent.status in (200, 201), sent.body
    made = await api.post("/api/decks/generate", guest, json={"sessionId": session_id})
    assert made.status == 201, made.body
    assert made.body["deck"]["title"] == "Live room"
    assert {c["sourceSessionId"] for c in made.body["cards"]} == {session_id}
    assert len(made.body["cards"]) == 2
    refused = await api.post("/api/decks/generate", stranger, json={"sessionId": session_id})
    assert refused.status in (403, 404)
    # into an existing deck of one's own
    pasted = await api.post(
        "/api/decks/generate",
        guest,
        json={"text": "Enzyme: a biological catalyst", "deckId": made.body["deck"]["id"]},
    )
    assert pasted.status == 201
    assert pasted.body["deck"]["id"] == made.body["deck"]["id"]
    assert pasted.body["deck"]["draftCount"] == 3
    someone_elses = await api.post(
        "/api/decks/generate",
        host,
        json={"text": "Enzyme: a biological catalyst", "deckId": made.body["deck"]["id"]},
    )
    assert someone_elses.status == 404


async def test_generation_refusals(ai_api: Api, fake_ai: FakeOpenAI) -> None:
    api = ai_api
    me, other = await api.register(), await api.register()
    private = await resource(api, other)
    assert (await api.post("/api/decks/generate", me, json={"resourceId": private})).status == 404
    for body, field in (
        ({}, "resourceId"),
        ({"text": "a", "resourceId": private}, "resourceId"),
        ({"text": "a", "count": 0}, "count"),
        ({"text": "a", "count": 31}, "count"),
        ({"text": "   "}, "text"),
        ({"resourceId": "nope"}, "resourceId"),
        ({"text": "a", "deckId": "nope"}, "deckId"),
    ):
        resp = await api.post("/api/decks/generate", me, json=body)
        assert (resp.status, resp.error_field()) == (422, field), resp.body
    missing = await api.post("/api/decks/generate", me, json={"resourceId": str(uuid.uuid4())})
    assert missing.status == 404
    assert await used_tokens(api, me) == 0
    fake_ai.mode = "error"
    failed = await api.post("/api/decks/generate", me, json={"text": "Atom: smallest unit"})
    assert failed.status == 502
    assert await used_tokens(api, me) == 0  # the reservation was given back
    fake_ai.mode = "ok"
    fake_ai.reply = "I cannot make cards from this."
    useless = await api.post("/api/decks/generate", me, json={"text": "Atom: smallest unit"})
    assert useless.status == 502
    assert (await api.get("/api/decks", me)).body["decks"] == []


async def test_generation_is_refused_when_ai_is_not_configured(api: Api) -> None:
    me = await api.register()
    resp = await api.post("/api/decks/generate", me, json={"text": "Atom: smallest unit"})
    assert resp.status == 503
    assert resp.body["error"]["code"] in ("ai_not_configured", "ai_disabled")
