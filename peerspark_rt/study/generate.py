"""Decks from your own material: the assistant turns a resource you may read, a session's chat
you may read, or a pasted text into DRAFT cards, which you then edit and keep.

The call goes through the one OpenAI client (infra/ai_client.py, 503 when AI is off), counted
against the caller's daily token quota exactly like the assistant (reserve, then settle with
what the upstream reported, or give back on failure), and recorded as an `ai_query` event.
Cards made from a resource cite it (`source`), cards from a chat cite the session.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..ai import budget
from ..ai.quota import QuotaService
from ..analytics.events import Analytics, Kind
from ..errors import Invalid, NotFound, UpstreamError
from ..infra import validation
from ..infra.aftercommit import unit
from ..infra.ai_client import AIClient, ChatMessage
from ..infra.pool import Database
from ..sessions.service import HISTORY_PAGE_MAX, HistoryQuery, SessionService
from . import db as study_db
from .service import MAX_BACK, MAX_FRONT, Card, Deck, DeckCreate, StudyService

log = logging.getLogger(__name__)

MAX_MATERIAL_CHARS = 12_000
MAX_PASTED_CHARS = 20_000
MAX_CARDS = 30
ANSWER_TOKENS_PER_CARD = 80
GENERATE_TEMPERATURE = 0.3

SYSTEM = (
    "You are a flashcard writer for students. From the material the user gives, write at most "
    "{count} flashcards that test its key facts and ideas: one question or cue on the front, a "
    "short exact answer on the back, and up to three lowercase tags. Use only the material. "
    'Answer with nothing but a JSON array of objects with the keys "front", "back" and "tags".'
)


class GenerateRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    resource_id: str | None = None
    session_id: str | None = None
    text: str | None = None
    deck_id: str | None = None  # add the drafts to this deck of yours, else a new deck
    title: str | None = None  # the new deck's title (default: the material's)
    count: int = 10


class Generated(msgspec.Struct, rename="camel"):
    deck: Deck
    cards: list[Card]
    tokens_used: int


def parse_cards(text: str, count: int) -> list[tuple[str, str, list[str]]]:
    """The cards in the assistant's answer (a JSON array, maybe wrapped in prose or a code
    fence); entries that are not usable cards are dropped."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        items = json.loads(text[start : end + 1])
    except ValueError:
        return []
    cards: list[tuple[str, str, list[str]]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        front, back, tags = item.get("front"), item.get("back"), item.get("tags") or []
        if not isinstance(front, str) or not isinstance(back, str):
            continue
        front, back = front.strip()[:MAX_FRONT], back.strip()[:MAX_BACK]
        if not front or not back:
            continue
        clean = [t.strip().lower()[:50] for t in tags if isinstance(t, str) and t.strip()]
        cards.append((front, back, list(dict.fromkeys(clean))[:3]))
        if len(cards) >= count:
            break
    return cards


class DeckGenerator:
    def __init__(
        self,
        db: Database,
        ai: AIClient,
        quota: QuotaService,
        study: StudyService,
        sessions: SessionService,
        analytics: Analytics,
    ) -> None:
        self.db = db
        self.ai = ai
        self.quota = quota
        self.study = study
        self.sessions = sessions
        self.analytics = analytics

    async def _material(
        self, principal: Principal, body: GenerateRequest
    ) -> tuple[str, str, uuid.UUID | None, uuid.UUID | None]:
        """(title, text, resource cited, session cited)."""
        given = [n for n, v in (("resourceId", body.resource_id), ("sessionId", body.session_id),
                                ("text", body.text)) if v is not None]  # fmt: skip
        if len(given) != 1:
            raise Invalid("resourceId", "give exactly one of resourceId, sessionId or text")
        if body.resource_id is not None:
            resource_id = validation.parse_uuid(body.resource_id, "resourceId")
            row = await study_db.readable_resource(self.db.pool, principal.user_id, resource_id)
            if row is None:
                raise NotFound("resource not found")
            parts = [row["title"], row["description"] or "", row["content"] or ""]
            material = "\n\n".join(p for p in parts if p)
            return row["title"], material, resource_id, None
        if body.session_id is not None:
            session_id = validation.parse_uuid(body.session_id, "sessionId")
            page = await self.sessions.history(
                principal, session_id, HistoryQuery(limit=HISTORY_PAGE_MAX)
            )
            lines = [
                f"{m.sender.username}: {m.body}"
                for m in page.messages
                if m.body and not m.retracted and m.kind in ("text", "ai")
            ]
            if not lines:
                raise Invalid("sessionId", "the session's chat has no messages to study from")
            session = await self.sessions.can_read(principal, session_id)
            return str(session["title"]), "\n".join(lines), None, session_id
        text = validation.text(body.text or "", "text", max_len=MAX_PASTED_CHARS)
        return text.splitlines()[0][:80], text, None, None

    async def generate(self, principal: Principal, body: GenerateRequest) -> Generated:
        self.ai.require()
        if not 1 <= body.count <= MAX_CARDS:
            raise Invalid("count", f"must be between 1 and {MAX_CARDS}")
        title = validation.optional_text(body.title, "title", 200)
        deck_id = validation.parse_uuid(body.deck_id, "deckId") if body.deck_id else None
        if deck_id is not None:
            async with self.db.transaction() as conn:
                await self.study.require_owner(conn, principal, deck_id)  # 404/403 before spending
        source_title, material, resource_id, session_id = await self._material(principal, body)
        if not material.strip():
            raise Invalid("resourceId", "the resource has no text to study from")
        messages = [
            ChatMessage("system", SYSTEM.format(count=body.count)),
            ChatMessage("user", material[:MAX_MATERIAL_CHARS]),
        ]
        prompt_tokens = budget.estimate_prompt(messages)
        reservation, _ = await self.quota.reserve(
            principal, prompt_tokens, body.count * ANSWER_TOKENS_PER_CARD
        )
        asked_at = dt.datetime.now(dt.UTC)
        try:
            completion = await self.ai.complete(
                messages, max_tokens=reservation.max_answer, temperature=GENERATE_TEMPERATURE
            )
        except BaseException:
            await self.quota.release(reservation)
            raise
        used = (
            completion.usage.total_tokens
            if completion.usage is not None
            else prompt_tokens + budget.estimate_text(completion.text)
        )
        cards = parse_cards(completion.text, body.count)
        if not cards:
            await self.quota.settle(reservation, used)
            raise UpstreamError("the assistant's answer held no usable cards; try again")
        card_ids = [uuid.uuid4() for _ in cards]
        try:
            async with unit(self.db) as (conn, after):
                if deck_id is None:
                    deck = await self.study.create_deck(
                        principal,
                        DeckCreate(title=title or source_title or "Generated cards"),
                        source_resource_id=resource_id,
                        conn=conn,
                    )
                    deck_id = deck.id
                else:
                    await self.study.require_owner(conn, principal, deck_id)
                rows: list[dict[str, Any]] = [
                    {"id": cid, "deck_id": deck_id, "front": f, "back": b, "tags": t,
                     "status": "draft", "source_resource_id": resource_id,
                     "source_session_id": session_id, "created_by": principal.user_id}
                    for cid, (f, b, t) in zip(card_ids, cards, strict=True)
                ]  # fmt: skip
                await study_db.insert_cards(conn, rows)
                await self.quota.settle(reservation, used, conn)
                await self.analytics.record(
                    conn,
                    principal.user_id,
                    Kind.AI_QUERY,
                    occurred_at=asked_at,
                    session_id=session_id,
                    value=float(used),
                    meta={"endpoint": "deck_generate", "deckId": str(deck_id), "cards": len(cards),
                          "tokens": used, "model": self.ai.model},
                    dedupe_key=f"deck:{card_ids[0]}",
                    after=after,
                )  # fmt: skip
        except BaseException:
            # Nothing was stored, but the AI service did the work: charge what it reported
            # (the settlement inside the transaction was rolled back with it).
            reservation.settled = False
            try:
                await self.quota.settle(reservation, used)
            except Exception:
                log.exception("charging a deck generation that could not be stored failed")
            raise
        return Generated(
            deck=await self.study.deck(principal, deck_id),
            cards=[await self.study.card(principal, cid) for cid in card_ids],
            tokens_used=used,
        )


# the application's key for what this module provides (typed app state)
DECK_GENERATOR = web.AppKey("deck_generator", DeckGenerator)
