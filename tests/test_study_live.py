"""Live review in a session room, on two real nodes: the organizer runs a deck shared with the
session's pod, every member sees each `card` frame, answers, and the room sees the `card_tally`;
each answer updates the member's own schedule of the card. Refusals: not the organizer, a deck
not shared with the pod, a second answer, an answer to a card no longer shown."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from peerspark_rt import protocol
from tests.helpers import Api, frame_of, open_session
from tests.nodes import Node, node_apis

pytestmark = pytest.mark.multinode


@pytest.fixture
async def apis(nodes: list[Node]) -> AsyncIterator[list[Api]]:
    async with node_apis(nodes) as made:
        yield made


async def test_a_live_review_across_two_nodes(apis: list[Api], db: asyncpg.Connection) -> None:
    one, two = apis[0], apis[1]
    host, member, outsider = await one.register(), await two.register(), await two.register()
    pod = await one.create_pod(host)
    assert (await two.post(f"/api/pods/{pod['id']}/join", member)).status == 200
    room = await open_session(one, host, member, sessionType="pod", podId=pod["id"])
    session_id = room.split(":")[1]
    deck = (await one.post("/api/decks", host, json={"title": "Live", "podId": pod["id"]})).body
    cards = []
    for front in ("first", "second"):
        resp = await one.post(
            f"/api/decks/{deck['id']}/cards", host, json={"front": front, "back": front.upper()}
        )
        cards.append(resp.body["id"])
    host_live, member_live = await one.live(host), await two.live(member)
    await host_live.join(room)
    await member_live.join(room)

    # only the organizer starts it, and only with a deck of the session's pod
    refused = await two.post(f"/api/study/live/{session_id}", member, json={"deckId": deck["id"]})
    assert refused.status == 403
    own = (await one.post("/api/decks", host, json={"title": "Mine"})).body
    await one.post(f"/api/decks/{own['id']}/cards", host, json={"front": "a", "back": "b"})
    wrong = await one.post(f"/api/study/live/{session_id}", host, json={"deckId": own["id"]})
    assert (wrong.status, wrong.error_field()) == (422, "deckId")
    assert (await two.get(f"/api/study/live/{session_id}", outsider)).status == 404

    started = await one.post(f"/api/study/live/{session_id}", host, json={"deckId": deck["id"]})
    assert started.status == 201, started.body
    for client in (host_live, member_live):
        shown: protocol.Card = await frame_of(client, protocol.Card, 10, round=1)
        assert shown.status == "showing"
        assert shown.total == 2
        assert shown.card is not None
        assert (shown.card.id, shown.card.front) == (cards[0], "first")

    answered = await two.post(
        f"/api/study/live/{session_id}/answer", member, json={"round": 1, "rating": "good"}
    )
    assert answered.status == 200, answered.body
    assert answered.body["review"]["state"] == "learning"
    for client in (host_live, member_live):
        tally: protocol.CardTally = await frame_of(client, protocol.CardTally, 10, answered=1)
        assert (tally.good, tally.again, tally.card_id) == (1, 0, cards[0])
    await one.post(
        f"/api/study/live/{session_id}/answer", host, json={"round": 1, "rating": "again"}
    )
    for client in (host_live, member_live):
        tally = await frame_of(client, protocol.CardTally, 10, answered=2)
        assert (tally.good, tally.again) == (1, 1)
    twice = await two.post(
        f"/api/study/live/{session_id}/answer", member, json={"round": 1, "rating": "easy"}
    )
    assert twice.status == 409
    state = await two.get(f"/api/study/live/{session_id}", member)
    assert state.body["tally"]["answered"] == 2
    assert state.body["card"]["card"]["id"] == cards[0]

    # each member's own schedule was updated from their own answer
    rows = await db.fetch(
        """SELECT user_id, rating, session_id FROM study_reviews WHERE card_id = $1
           ORDER BY rating""",
        uuid.UUID(cards[0]),
    )
    assert [(str(r["user_id"]), r["rating"], str(r["session_id"])) for r in rows] == [
        (host.id, 1, session_id),
        (member.id, 3, session_id),
    ]

    assert (await two.post(f"/api/study/live/{session_id}/next", member)).status == 403
    nxt = await one.post(f"/api/study/live/{session_id}/next", host)
    assert nxt.status == 200
    shown = await frame_of(member_live, protocol.Card, 10, round=2)
    assert shown.card is not None
    assert shown.card.id == cards[1]
    stale = await two.post(
        f"/api/study/live/{session_id}/answer", member, json={"round": 1, "rating": "good"}
    )
    assert stale.status == 409
    assert stale.body["error"]["code"] == "not_current_card"
    ended = await one.post(f"/api/study/live/{session_id}/end", host)
    assert ended.body["status"] == "ended"
    final = await frame_of(member_live, protocol.Card, 10, status="ended")
    assert final.card is None
    late = await two.post(
        f"/api/study/live/{session_id}/answer", member, json={"round": 2, "rating": "good"}
    )
    assert late.status == 404
