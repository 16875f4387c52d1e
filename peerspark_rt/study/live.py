"""Live review in a session room: the organizer runs a deck shared with the session's pod, one
card at a time; every member answers, the room sees the tally, and each answer is a review of
that member's own schedule of the card.

The state (the cards in order, the round shown) is a row under a lock, changed by REST calls;
each change is published to the room (`card` and `card_tally` frames, PROTOCOL.md) through the
broker, so every node's room actor only relays bytes it is handed as mail: no actor awaits the
database or the network for this. A member who joins late reads the current card with GET.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import validation
from ..infra.aftercommit import unit
from ..infra.dbtypes import Conn
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..protocol import Card, CardShown, CardTally
from ..sessions.service import SessionService
from . import db as study_db
from . import scheduling
from .service import ReviewRequest, ReviewResult, StudyService

MAX_LIVE_CARDS = 200


class LiveStart(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    deck_id: str
    limit: int = 20  # how many of the deck's kept cards, oldest first


class LiveAnswer(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    round: int
    rating: str


class LiveState(msgspec.Struct, rename="camel"):
    card: Card
    tally: CardTally | None


class LiveAnswered(msgspec.Struct, rename="camel"):
    tally: CardTally
    review: ReviewResult


def _room(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


class LiveReviews:
    def __init__(
        self, db: Database, live: LiveEvents, sessions: SessionService, study: StudyService
    ) -> None:
        self.db = db
        self.live = live
        self.sessions = sessions
        self.study = study

    async def _participant(self, principal: Principal, session_id: uuid.UUID) -> dict[str, object]:
        session = await self.sessions.can_read(principal, session_id)
        if session["status"] in ("completed", "cancelled"):
            raise Conflict(f"the session is {session['status']}", code="session_closed")
        return dict(session)

    async def _organizer(self, principal: Principal, session_id: uuid.UUID) -> dict[str, object]:
        session = await self._participant(principal, session_id)
        if session.get("my_role") != "organizer" or session.get("my_status") in (
            None,
            "declined",
        ):
            raise Forbidden("only the organizer runs a live review", code="not_organizer")
        return session

    async def _frame(
        self, session_id: uuid.UUID, deck_id: uuid.UUID, card_ids: list[uuid.UUID], round_: int,
        status: str,
    ) -> Card:  # fmt: skip
        shown = None
        if status == "running" and 1 <= round_ <= len(card_ids):
            row = await study_db.live_card(self.db.pool, card_ids[round_ - 1])
            if row is not None:
                image = await self.study.uploads.link_for_row(row)
                shown = CardShown(
                    str(row["id"]), str(row["deck_id"]), row["front"], row["back"],
                    list(row["tags"]), image.url if image else None,
                )  # fmt: skip
        return Card(
            room=_room(session_id),
            session_id=str(session_id),
            deck_id=str(deck_id),
            round=round_,
            total=len(card_ids),
            status="showing" if shown is not None else "ended",
            card=shown,
        )

    async def _tally(
        self,
        session_id: uuid.UUID,
        round_: int,
        card_id: uuid.UUID,
        conn: Conn | None = None,
    ) -> CardTally:
        counts = await study_db.tally(conn or self.db.pool, session_id, round_)
        return CardTally(
            room=_room(session_id),
            round=round_,
            card_id=str(card_id),
            again=counts.get(1, 0),
            hard=counts.get(2, 0),
            good=counts.get(3, 0),
            easy=counts.get(4, 0),
            answered=sum(counts.values()),
        )

    async def start(self, principal: Principal, session_id: uuid.UUID, body: LiveStart) -> Card:
        deck_id = validation.parse_uuid(body.deck_id, "deckId")
        if not 1 <= body.limit <= MAX_LIVE_CARDS:
            raise Invalid("limit", f"must be between 1 and {MAX_LIVE_CARDS}")
        session = await self._organizer(principal, session_id)
        deck = await self.study.deck(principal, deck_id)
        if session.get("pod_id") is None or deck.pod_id != session.get("pod_id"):
            raise Invalid("deckId", "a live review runs a deck shared with the session's pod")
        rows = await study_db.all_card_ids(self.db.pool, deck_id, body.limit)
        if not rows:
            raise Invalid("deckId", "the deck has no kept cards")
        async with self.db.transaction() as conn:
            await study_db.start_live(conn, session_id, deck_id, principal.user_id, rows)
        frame = await self._frame(session_id, deck_id, rows, 1, "running")
        await self.live.publish(frame.room, frame)
        return frame

    async def advance(self, principal: Principal, session_id: uuid.UUID, *, end: bool) -> Card:
        """Show the next card (or end the review, also after the last card)."""
        await self._organizer(principal, session_id)
        async with self.db.transaction() as conn:
            row = await study_db.lock_live(conn, session_id)
            if row is None or row["status"] != "running":
                raise NotFound("no live review is running in this session")
            cards = list(row["card_ids"])
            round_ = row["round"] + (0 if end else 1)
            status = "ended" if end or round_ > len(cards) else "running"
            await study_db.set_live(conn, session_id, min(round_, len(cards)), status)
        frame = await self._frame(session_id, row["deck_id"], cards, round_, status)
        await self.live.publish(frame.room, frame)
        return frame

    async def state(self, principal: Principal, session_id: uuid.UUID) -> LiveState:
        await self.sessions.can_read(principal, session_id)
        row = await study_db.get_live(self.db.pool, session_id)
        if row is None:
            raise NotFound("no live review in this session")
        cards = list(row["card_ids"])
        frame = await self._frame(session_id, row["deck_id"], cards, row["round"], row["status"])
        tally = None
        if frame.card is not None:
            tally = await self._tally(session_id, row["round"], cards[row["round"] - 1])
        return LiveState(frame, tally)

    async def answer(
        self, principal: Principal, session_id: uuid.UUID, body: LiveAnswer
    ) -> LiveAnswered:
        """A member's answer to the card shown: once per member and round; it reviews their
        own schedule of the card (client review id `live:<session>:<start>:<round>`)."""
        rating = validation.one_of(body.rating, "rating", scheduling.RATINGS)
        session = await self._participant(principal, session_id)
        if session.get("my_status") in (None, "declined", "invited"):
            raise Forbidden("join the session to answer", code="not_a_participant")
        async with unit(self.db) as (conn, after):
            row = await study_db.lock_live(conn, session_id)
            if row is None or row["status"] != "running":
                raise NotFound("no live review is running in this session")
            if body.round != row["round"]:
                raise Conflict(
                    f"round {body.round} is not the card shown (round {row['round']})",
                    code="not_current_card",
                )
            card_id = row["card_ids"][row["round"] - 1]
            if not await study_db.answer_live(
                conn,
                session_id,
                body.round,
                principal.user_id,
                scheduling.RATINGS.index(rating) + 1,
            ):
                raise Conflict("you answered this card already", code="already_answered")
            review = await self.study.review(
                principal,
                ReviewRequest(
                    card_id=str(card_id),
                    rating=rating,
                    client_review_id=f"live:{session_id}:{row['started_at'].timestamp()}:{body.round}",
                    reviewed_at=dt.datetime.now(dt.UTC),
                ),
                session_id=session_id,
                conn=conn,
                after=after,
            )
            # counted under the review's row lock, so each answer's tally includes every
            # answer before it; published once committed
            tally = await self._tally(session_id, body.round, card_id, conn)

            async def publish() -> None:
                await self.live.publish(tally.room, tally)

            after.add(publish)
        return LiveAnswered(tally, review)


# the application's key for what this module provides (typed app state)
LIVE_REVIEWS = web.AppKey("live_reviews", LiveReviews)
