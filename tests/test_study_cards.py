"""Flashcards through the API: decks and cards, who may see and change them (a deck shared with
a pod: every member studies it on their own schedule, only its owner changes it), FSRS
scheduling compared with the `fsrs` package itself, idempotent offline reviews and batch sync,
what is due "today" in different time zones, and the refusals."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
import zoneinfo
from typing import Any

import aiohttp
import asyncpg
import fsrs

from tests.helpers import Api, User


async def make_deck(api: Api, owner: User, **fields: Any) -> dict[str, Any]:
    resp = await api.post("/api/decks", owner, json={"title": "Biology", **fields})
    assert resp.status == 201, resp.body
    deck: dict[str, Any] = resp.body
    return deck


async def add_card(api: Api, owner: User, deck_id: str, front: str, back: str, **more: Any) -> str:
    resp = await api.post(
        f"/api/decks/{deck_id}/cards", owner, json={"front": front, "back": back, **more}
    )
    assert resp.status == 201, resp.body
    return str(resp.body["id"])


async def review(
    api: Api, user: User, card: str, rating: str, at: dt.datetime | None = None, **more: Any
) -> Any:
    body: dict[str, Any] = {
        "cardId": card,
        "rating": rating,
        "clientReviewId": more.pop("cid", None) or str(uuid.uuid4()),
        **more,
    }
    if at is not None:
        body["reviewedAt"] = at.isoformat()
    return await api.post("/api/study/reviews", user, json=body)


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- scheduling ------------------------------------------------------------------------------


async def test_a_card_reviewed_on_a_schedule_of_days_matches_fsrs(api: Api) -> None:
    me = await api.register()
    deck = await make_deck(api, me)
    card = await add_card(api, me, deck["id"], "mitochondria", "powerhouse of the cell")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=60)
    plan = [
        (0, "good"), (0.01, "good"), (3, "good"), (9, "hard"), (20, "again"), (20.01, "good"),
        (30, "easy"), (45, "good"),
    ]  # fmt: skip
    direct = fsrs.Card(card_id=0, due=start)
    scheduler = fsrs.Scheduler(desired_retention=0.9, enable_fuzzing=False)
    for days, rating in plan:
        when = start + dt.timedelta(days=days)
        resp = await review(api, me, card, rating, when)
        assert resp.status == 200, resp.body
        direct, _ = scheduler.review_card(
            direct, fsrs.Rating[rating.capitalize()], review_datetime=when
        )
        assert at(resp.body["due"]) == direct.due
        assert resp.body["stability"] == direct.stability
        assert resp.body["difficulty"] == direct.difficulty
        assert resp.body["state"] == direct.state.name.lower()


async def test_the_retention_target_is_the_users_own(api: Api) -> None:
    me, other = await api.register(), await api.register()
    assert (await api.get("/api/study/settings", me)).body == {
        "desiredRetention": 0.9,
        "newPerDay": 20,
    }
    resp = await api.put("/api/study/settings", me, json={"desiredRetention": 0.8})
    assert resp.status == 200
    assert resp.body["desiredRetention"] == 0.8
    bad = await api.put("/api/study/settings", me, json={"desiredRetention": 1.5})
    assert bad.status == 422
    assert bad.error_field() == "desiredRetention"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=10)
    dues = {}
    for user, retention in ((me, 0.8), (other, 0.9)):
        deck = await make_deck(api, user)
        card = await add_card(api, user, deck["id"], "2+2", "4")
        direct = fsrs.Card(card_id=0, due=start)
        scheduler = fsrs.Scheduler(desired_retention=retention, enable_fuzzing=False)
        for days in (0, 0.01, 2):
            when = start + dt.timedelta(days=days)
            resp = await review(api, user, card, "good", when)
            direct, _ = scheduler.review_card(direct, fsrs.Rating.Good, review_datetime=when)
            assert at(resp.body["due"]) == direct.due
        dues[retention] = at(resp.body["due"])
    # a lower retention target spaces reviews further apart
    assert dues[0.8] > dues[0.9]


async def test_an_exam_date_brings_every_review_before_it(api: Api) -> None:
    me = await api.register()
    exam = (dt.datetime.now(dt.UTC) + dt.timedelta(days=4)).date()
    deck = await make_deck(api, me, examDate=exam.isoformat())
    assert deck["examDate"] == exam.isoformat()
    card = await add_card(api, me, deck["id"], "Krebs cycle", "citric acid cycle")
    exam_start = dt.datetime.combine(exam, dt.time(), dt.UTC)
    now = dt.datetime.now(dt.UTC)
    for i, rating in enumerate(("easy", "easy", "easy")):
        resp = await review(api, me, card, rating, now + dt.timedelta(seconds=i))
        due = at(resp.body["due"])
        # never later than halfway to the exam
        moment = now + dt.timedelta(seconds=i)
        assert due <= moment + (exam_start - moment) / 2 + dt.timedelta(seconds=1)
    # without an exam date, Easy sends the card far beyond it
    plain = await make_deck(api, me)
    other = await add_card(api, me, plain["id"], "Krebs cycle", "citric acid cycle")
    resp = await review(api, me, other, "easy")
    assert at(resp.body["due"]) > exam_start


# --- idempotent reviews ----------------------------------------------------------------------


async def test_an_offline_review_synced_twice_counts_once(api: Api, db: asyncpg.Connection) -> None:
    me = await api.register()
    deck = await make_deck(api, me)
    card = await add_card(api, me, deck["id"], "H2O", "water")
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    first = await review(api, me, card, "good", when, cid="phone-1", durationMs=4000)
    again = await review(api, me, card, "good", when, cid="phone-1", durationMs=4000)
    assert first.status == again.status == 200
    assert first.body["duplicate"] is False
    assert again.body["duplicate"] is True
    assert again.body["due"] == first.body["due"]
    rows = await db.fetchval(
        "SELECT count(*) FROM study_reviews WHERE user_id = $1", uuid.UUID(me.id)
    )
    events = await db.fetch(
        """SELECT occurred_at, value, properties FROM analytics_events
           WHERE user_id = $1 AND event = 'card_reviewed'""",
        uuid.UUID(me.id),
    )
    assert rows == 1
    assert len(events) == 1
    assert events[0]["occurred_at"] == when.replace(microsecond=when.microsecond)
    assert events[0]["value"] == 3.0
    # the same id for another card is a mistake, not a duplicate
    other = await add_card(api, me, deck["id"], "NaCl", "salt")
    reused = await review(api, me, other, "good", cid="phone-1")
    assert reused.status == 409
    assert reused.body["error"]["code"] == "review_id_reused"


async def test_a_batch_sync_applies_each_review_on_its_own(api: Api) -> None:
    me = await api.register()
    deck = await make_deck(api, me)
    card = await add_card(api, me, deck["id"], "CO2", "carbon dioxide")
    base = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    items = [
        {"cardId": card, "rating": "good", "clientReviewId": "b1", "reviewedAt": base.isoformat()},
        {"cardId": str(uuid.uuid4()), "rating": "good", "clientReviewId": "b2"},
        {"cardId": card, "rating": "perfect", "clientReviewId": "b3"},
        {"cardId": card, "rating": "good", "clientReviewId": "b4",
         "reviewedAt": (base + dt.timedelta(minutes=15)).isoformat()},
        {"rating": "good", "clientReviewId": "b5"},
        "not a review",
        {"cardId": card, "rating": "good", "clientReviewId": "b1",
         "reviewedAt": base.isoformat()},
    ]  # fmt: skip
    resp = await api.post("/api/study/reviews/batch", me, json={"reviews": items})
    assert resp.status == 200, resp.body
    got = [(r["clientReviewId"], r["status"]) for r in resp.body["results"]]
    assert got == [
        ("b1", 200), ("b2", 404), ("b3", 422), ("b4", 200), ("b5", 422), (None, 422), ("b1", 200),
    ]  # fmt: skip
    results = resp.body["results"]
    assert results[2]["error"]["field"] == "rating"
    assert results[4]["error"]["field"] == "reviews[4].cardId"
    assert results[3]["result"]["state"] == "review"
    assert results[5]["error"]["field"] == "reviews[5]"
    assert results[6]["result"]["duplicate"] is True
    # an older review synced late counts as done just after the newer one
    late = await review(api, me, card, "again", base - dt.timedelta(days=1))
    assert late.status == 200
    assert at(late.body["reviewedAt"]) == base + dt.timedelta(minutes=15)


# --- due today, in the user's zone -----------------------------------------------------------


def _zones(now: dt.datetime, due: dt.datetime) -> tuple[str, str]:
    """A zone whose today ends after `due`, and one whose today ends before it."""
    later = earlier = None
    for offset in range(-12, 15):
        name = f"Etc/GMT{'+' if offset < 0 else '-'}{abs(offset)}" if offset else "UTC"
        tz = zoneinfo.ZoneInfo(name)
        local = now.astimezone(tz)
        end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tz)
        if end > due + dt.timedelta(minutes=20) and later is None:
            later = name
        if end < due - dt.timedelta(minutes=20) and earlier is None:
            earlier = name
    assert later is not None
    assert earlier is not None
    return later, earlier


async def test_what_is_due_today_depends_on_the_users_zone(api: Api) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    target = now + dt.timedelta(hours=3)
    # two Good reviews 10 minutes apart make a review card due a whole number of days later
    probe = fsrs.Card(card_id=0, due=now)
    scheduler = fsrs.Scheduler(enable_fuzzing=False)
    probe, _ = scheduler.review_card(probe, fsrs.Rating.Good, review_datetime=now)
    second = now + dt.timedelta(minutes=10)
    probe, _ = scheduler.review_card(probe, fsrs.Rating.Good, review_datetime=second)
    interval = probe.due - second
    second_at = target - interval
    first_at = second_at - dt.timedelta(minutes=10)
    later, earlier = _zones(now, target)
    seen = {}
    for zone in (later, earlier):
        user = await api.register()
        assert (await api.patch("/api/auth/me", user, json={"timezone": zone})).status == 200
        await api.put("/api/study/settings", user, json={"newPerDay": 0})
        deck = await make_deck(api, user)
        card = await add_card(api, user, deck["id"], "pi", "3.14159")
        await review(api, user, card, "good", first_at)
        resp = await review(api, user, card, "good", second_at)
        assert at(resp.body["due"]) == target
        due = await api.get("/api/study/due", user)
        assert due.status == 200, due.body
        assert due.body["timezone"] == zone
        local = now.astimezone(zoneinfo.ZoneInfo(zone))
        assert due.body["today"] == local.date().isoformat()
        seen[zone] = [c["id"] for c in due.body["cards"]]
    assert len(seen[later]) == 1
    assert seen[earlier] == []


async def test_new_cards_are_offered_up_to_the_daily_limit(api: Api) -> None:
    me = await api.register()
    await api.put("/api/study/settings", me, json={"newPerDay": 3})
    deck = await make_deck(api, me)
    cards = [await add_card(api, me, deck["id"], f"q{i}", f"a{i}") for i in range(5)]
    due = await api.get("/api/study/due", me)
    assert [c["id"] for c in due.body["cards"]] == cards[:3]
    assert due.body["newCount"] == 3
    assert due.body["reviewCount"] == 0
    await review(api, me, cards[0], "again")  # now learning, due in a minute: still today
    due = await api.get("/api/study/due", me)
    assert due.body["reviewCount"] == 1
    assert [(c["id"], c["state"]) for c in due.body["cards"]] == [
        (cards[0], "learning"),
        (cards[1], "new"),
        (cards[2], "new"),
    ]
    # an exam deck offers all its new cards at once
    exam = (dt.datetime.now(dt.UTC) + dt.timedelta(days=5)).date().isoformat()
    assert (await api.patch(f"/api/decks/{deck['id']}", me, json={"examDate": exam})).status == 200
    due = await api.get("/api/study/due", me)
    assert due.body["newCount"] == 4
    bad = await api.get("/api/study/due?limit=0", me)
    assert bad.status == 422
    assert bad.error_field() == "limit"


# --- decks, cards, visibility ----------------------------------------------------------------


async def test_a_deck_shared_with_a_pod_is_studied_by_each_member_on_their_own_schedule(
    api: Api,
) -> None:
    owner, member, outsider = await api.register(), await api.register(), await api.register()
    pod = await api.create_pod(owner)
    assert (await api.post(f"/api/pods/{pod['id']}/join", member)).status == 200
    deck = await make_deck(api, owner, podId=pod["id"])
    card = await add_card(api, owner, deck["id"], "F = ?", "m a", tags=["Physics", "newton"])
    listed = await api.get("/api/decks", member)
    assert [d["id"] for d in listed.body["decks"]] == [deck["id"]]
    assert listed.body["decks"][0]["mine"] is False
    got = await api.get(f"/api/cards/{card}", member)
    assert got.status == 200
    assert got.body["tags"] == ["physics", "newton"]
    # the member's review is theirs alone
    assert (await review(api, member, card, "easy")).status == 200
    owner_due = await api.get("/api/study/due", owner)
    member_due = await api.get("/api/study/due", member)
    assert [(c["id"], c["state"]) for c in owner_due.body["cards"]] == [(card, "new")]
    assert member_due.body["cards"] == []
    # members read, only the owner changes; others do not see it at all
    assert (await api.patch(f"/api/decks/{deck['id']}", member, json={"title": "x"})).status == 403
    assert (await api.patch(f"/api/cards/{card}", member, json={"front": "x"})).status == 403
    assert (await api.delete(f"/api/cards/{card}", member)).status == 403
    assert (await api.post(f"/api/decks/{deck['id']}/cards", member,
                           json={"front": "a", "back": "b"})).status == 403  # fmt: skip
    for path in (f"/api/decks/{deck['id']}", f"/api/cards/{card}",
                 f"/api/decks/{deck['id']}/cards", f"/api/decks/{deck['id']}/export"):  # fmt: skip
        assert (await api.get(path, outsider)).status == 404, path
    assert (await review(api, outsider, card, "good")).status == 404
    assert (await api.get("/api/decks", outsider)).body["decks"] == []
    # sharing needs membership
    refused = await api.post("/api/decks", outsider, json={"title": "x", "podId": pod["id"]})
    assert refused.status == 422
    assert refused.error_field() == "podId"
    # leaving the pod loses the deck
    assert (await api.delete(f"/api/pods/{pod['id']}/leave", member)).status == 204
    assert (await api.get(f"/api/decks/{deck['id']}", member)).status == 404
    assert (await api.get("/api/study/due", member)).body["reviewCount"] == 0


async def test_deck_and_card_crud_and_refusals(api: Api) -> None:
    me = await api.register()
    for body, field in (
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "podId": "nope"}, "podId"),
        ({"title": "ok", "examDate": "tomorrow"}, "examDate"),
        ({}, "title"),
        ({"title": "ok", "colour": "red"}, "colour"),
    ):
        resp = await api.post("/api/decks", me, json=body)
        assert (resp.status, resp.error_field()) == (422, field), resp.body
    deck = await make_deck(api, me, description="cells")
    deck_id = deck["id"]
    card_bodies: tuple[tuple[dict[str, Any], str], ...] = (
        ({"front": "", "back": "b"}, "front"),
        ({"front": "a", "back": "b" * 8001}, "back"),
        ({"front": "a", "back": "b", "tags": ["x" * 51]}, "tags"),
        ({"front": "a", "back": "b", "imageUploadId": str(uuid.uuid4())}, "imageUploadId"),
    )
    for card_body, field in card_bodies:
        resp = await api.post(f"/api/decks/{deck_id}/cards", me, json=card_body)
        assert (resp.status, resp.error_field()) == (422, field), resp.body
    card = await add_card(api, me, deck_id, "front", "back")
    edited = await api.patch(f"/api/cards/{card}", me, json={"back": "new back", "tags": ["a"]})
    assert edited.status == 200
    assert edited.body["back"] == "new back"
    demote = await api.patch(f"/api/cards/{card}", me, json={"status": "draft"})
    assert demote.status == 422
    assert demote.error_field() == "status"
    assert (await api.get(f"/api/decks/{uuid.uuid4()}", me)).status == 404
    assert (await api.get(f"/api/cards/{uuid.uuid4()}", me)).status == 404
    assert (await api.get("/api/decks/not-a-uuid", me)).status in (404, 422)
    page = await api.get(f"/api/decks/{deck_id}/cards?limit=1", me)
    assert page.status == 200
    assert len(page.body["cards"]) == 1
    assert (await api.get(f"/api/decks/{deck_id}", me)).body["cardCount"] == 1
    assert (await api.delete(f"/api/cards/{card}", me)).status == 204
    assert (await api.get(f"/api/cards/{card}", me)).status == 404
    assert (await api.delete(f"/api/decks/{deck_id}", me)).status == 204
    assert (await api.get(f"/api/decks/{deck_id}", me)).status == 404
    assert (await api.get("/api/decks")).status == 401


async def test_a_card_may_carry_an_uploaded_image(api: Api) -> None:
    me, other = await api.register(), await api.register()
    deck = await make_deck(api, me)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    form = aiohttp.FormData()
    form.add_field("file", png, filename="cell.png", content_type="image/png")
    up = await api.call("POST", "/api/upload", me, data=form)
    assert up.status == 201, up.body
    # someone else's upload is not theirs to use
    taken = await api.post(
        f"/api/decks/{deck['id']}/cards",
        other,
        json={"front": "a", "back": "b", "imageUploadId": up.body["id"]},
    )
    assert taken.status == 404
    card = await add_card(api, me, deck["id"], "cell", "diagram", imageUploadId=up.body["id"])
    got = await api.get(f"/api/cards/{card}", me)
    assert got.body["image"]["filename"] == "cell.png"
    url = urllib.parse.urlsplit(got.body["image"]["url"])
    image = await api.get(f"{url.path}?{url.query}")
    assert image.status == 200
    assert image.body == png
    due = await api.get("/api/study/due", me)
    assert [c["image"]["filename"] for c in due.body["cards"]] == ["cell.png"]
    removed = await api.patch(f"/api/cards/{card}", me, json={"imageUploadId": ""})
    assert removed.status == 200
    assert removed.body["image"] is None


async def test_new_cards_come_in_the_order_they_were_kept(api: Api) -> None:
    me = await api.register()
    await api.put("/api/study/settings", me, json={"newPerDay": 100})
    deck = await make_deck(api, me)
    cards = [await add_card(api, me, deck["id"], f"q{i}", f"a{i}") for i in range(5)]

    async def new_ones() -> list[str]:
        due = await api.get(f"/api/study/due?deckId={deck['id']}", me)
        return [c["id"] for c in due.body["cards"] if c["state"] == "new"]

    assert await new_ones() == cards
    # reviewed out of order, and again after the list was read (it remembers where new ones
    # begin): the others keep their order
    for i in (2, 0):
        await review(api, me, cards[i], "easy")
        assert cards[i] not in await new_ones()
    assert await new_ones() == [cards[1], cards[3], cards[4]]
    late = await add_card(api, me, deck["id"], "late", "card")
    for i in (1, 3, 4):
        await review(api, me, cards[i], "easy")
    assert await new_ones() == [late]
    await review(api, me, late, "easy")
    assert await new_ones() == []
    newer = await add_card(api, me, deck["id"], "newer", "card")
    assert await new_ones() == [newer]
