"""Flashcards: decks and cards, reviews scheduled by FSRS, what is due today, the per-user
retention target, and Anki-compatible text import and export.

Who may do what: a deck's owner edits it and its cards; a deck shared with a pod is read and
studied by every active member of the pod (each on their own schedule), who get 403 when they
try to change it; anyone else gets 404, as for every private thing. Cards are drafts (the
assistant's suggestions) until kept; only kept cards are studied or exported.

A review is idempotent by the client's review id: an offline mobile review synced twice is
stored, scheduled and counted (analytics `card_reviewed`, in the review's own transaction)
once, and the second sync gets the first one's result with `duplicate: true`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import uuid
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Analytics, Kind
from ..errors import AppError, Conflict, Forbidden, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra import validation
from ..infra.aftercommit import OnCommit, unit
from ..infra.dbtypes import Conn
from ..infra.pool import Database
from ..pods.service import PodService
from ..resources.db import uploads as uploads_db
from ..resources.uploads import FileLink, UploadService
from . import db as study_db
from . import scheduling

log = logging.getLogger(__name__)

MAX_FRONT = 2000
MAX_BACK = 8000
MAX_CARDS_PAGE = 500
MAX_DUE = 500
MAX_BATCH = 500
MAX_IMPORT_ROWS = 5000
FUTURE_SLACK = dt.timedelta(minutes=5)  # a client clock a little ahead is not an error
CARD_STATUSES = ("draft", "kept")

Rating = Literal["again", "hard", "good", "easy"]


# --- shapes ----------------------------------------------------------------------------------


class DeckCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str
    description: str | None = None
    pod_id: str | None = None  # share with this pod (the owner must be an active member)
    exam_date: dt.date | None = None


class DeckUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    title: str | None = None
    description: str | None = None
    # an empty string unshares / clears
    pod_id: str | None = None
    exam_date: str | None = None


class Deck(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    owner_id: uuid.UUID
    pod_id: uuid.UUID | None
    title: str
    description: str | None
    exam_date: dt.date | None
    source_resource_id: uuid.UUID | None
    card_count: int
    draft_count: int
    mine: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record, viewer: uuid.UUID) -> Deck:
        values = {f: row[f] for f in cls.__struct_fields__ if f != "mine"}
        return cls(**values, mine=row["owner_id"] == viewer)


class DeckList(msgspec.Struct, rename="camel"):
    decks: list[Deck]


class CardCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    front: str
    back: str
    tags: list[str] = []
    image_upload_id: str | None = None  # an image uploaded with POST /api/upload


class CardUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    front: str | None = None
    back: str | None = None
    tags: list[str] | None = None
    status: str | None = None  # "kept" keeps a draft
    image_upload_id: str | None = None  # an empty string removes the image


class Source(msgspec.Struct, rename="camel"):
    resource_id: uuid.UUID
    title: str


class Card(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    deck_id: uuid.UUID
    front: str
    back: str
    tags: list[str]
    status: str
    image: FileLink | None
    source: Source | None  # the resource it was made from, when the reader may see it
    source_session_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CardPage(msgspec.Struct, rename="camel"):
    cards: list[Card]
    next_cursor: str | None


class CardQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    status: str | None = None
    limit: int = 100
    cursor: str | None = None


class KeepRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_ids: list[str] | None = None  # none: every draft of the deck


class KeepResult(msgspec.Struct, rename="camel"):
    kept: int


class ReviewRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_id: str
    rating: str
    client_review_id: str
    reviewed_at: dt.datetime | None = None  # when it was done (offline reviews); default now
    duration_ms: int | None = None


class ReviewResult(msgspec.Struct, rename="camel"):
    client_review_id: str
    card_id: uuid.UUID
    rating: str
    reviewed_at: dt.datetime
    state: str
    due: dt.datetime
    stability: float | None
    difficulty: float | None
    duplicate: bool = False


class BatchRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    # each item is read on its own (ReviewRequest), so one malformed item fails only itself
    reviews: list[Any]


class ItemError(msgspec.Struct, rename="camel"):
    code: str
    message: str
    field: str | None = None


class BatchItem(msgspec.Struct, rename="camel"):
    index: int
    client_review_id: str | None
    status: int
    result: ReviewResult | None = None
    error: ItemError | None = None


class BatchResult(msgspec.Struct, rename="camel"):
    results: list[BatchItem]


class DueQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    deck_id: str | None = None
    limit: int = 100


class DueCard(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    deck_id: uuid.UUID
    deck_title: str
    front: str
    back: str
    tags: list[str]
    state: str  # new, learning, review, relearning
    due: dt.datetime | None  # None for a new card
    image: FileLink | None = None


class DueList(msgspec.Struct, rename="camel"):
    timezone: str
    today: dt.date
    now: dt.datetime
    due_until: dt.datetime  # the end of today in the user's zone
    review_count: int  # studied cards due today (all of them, not just those listed)
    new_count: int  # new cards offered today (listed)
    cards: list[DueCard]


class StudySettings(msgspec.Struct, rename="camel"):
    desired_retention: float
    new_per_day: int


class StudySettingsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    desired_retention: float | None = None
    new_per_day: int | None = None


class ImportSkipped(msgspec.Struct, rename="camel"):
    line: int
    reason: str


class ImportResult(msgspec.Struct, rename="camel"):
    imported: int
    skipped: list[ImportSkipped]


# --- the service -----------------------------------------------------------------------------


def _uuid_or_none(value: str | None, field: str) -> uuid.UUID | None:
    return validation.parse_uuid(value, field) if value else None


class StudyService:
    def __init__(
        self, db: Database, pods: PodService, uploads: UploadService, analytics: Analytics
    ) -> None:
        self.db = db
        self.pods = pods
        self.uploads = uploads
        self.analytics = analytics

    # --- decks -----------------------------------------------------------------------------

    async def _pod_to_share(self, principal: Principal, raw: str, conn: Conn) -> uuid.UUID:
        pod_id = validation.parse_uuid(raw, "podId")
        try:
            await self.pods.require_member(principal, pod_id, db=conn)
        except (NotFound, Forbidden):
            raise Invalid("podId", "you can share a deck only with a pod you belong to") from None
        return pod_id

    async def create_deck(
        self,
        principal: Principal,
        body: DeckCreate,
        *,
        source_resource_id: uuid.UUID | None = None,
        conn: Conn | None = None,
    ) -> Deck:
        title = validation.text(body.title, "title", max_len=200)
        description = validation.optional_text(body.description, "description", 2000)
        if conn is None:
            async with self.db.transaction() as own:
                deck_id = await self._insert_deck(
                    own, principal, body, title, description, source_resource_id
                )
        else:
            deck_id = await self._insert_deck(
                conn, principal, body, title, description, source_resource_id
            )
        return await self.deck(principal, deck_id, conn)

    async def _insert_deck(
        self,
        conn: Conn,
        principal: Principal,
        body: DeckCreate,
        title: str,
        description: str | None,
        source_resource_id: uuid.UUID | None,
    ) -> uuid.UUID:
        pod_id = await self._pod_to_share(principal, body.pod_id, conn) if body.pod_id else None
        return await study_db.insert_deck(
            conn,
            {
                "owner_id": principal.user_id,
                "pod_id": pod_id,
                "title": title,
                "description": description,
                "exam_date": body.exam_date,
                "source_resource_id": source_resource_id,
            },
        )

    async def deck(
        self, principal: Principal, deck_id: uuid.UUID, conn: Conn | None = None
    ) -> Deck:
        row = await study_db.get_deck(conn or self.db.pool, principal.user_id, deck_id)
        if row is None:
            raise NotFound("deck not found")
        return Deck.from_row(row, principal.user_id)

    async def decks(self, principal: Principal) -> DeckList:
        rows = await study_db.list_decks(self.db.pool, principal.user_id)
        return DeckList([Deck.from_row(r, principal.user_id) for r in rows])

    async def require_owner(self, conn: Conn, principal: Principal, deck_id: uuid.UUID) -> None:
        """404 unless the caller may see the deck, 403 unless it is theirs (locks it)."""
        if await study_db.get_deck(conn, principal.user_id, deck_id) is None:
            raise NotFound("deck not found")
        row = await study_db.lock_deck(conn, deck_id)
        if row is None:
            raise NotFound("deck not found")
        if row["owner_id"] != principal.user_id:
            raise Forbidden("only the deck's owner changes it", code="not_deck_owner")

    async def update_deck(self, principal: Principal, deck_id: uuid.UUID, body: DeckUpdate) -> Deck:
        changes: dict[str, Any] = {}
        if body.title is not None:
            changes["title"] = validation.text(body.title, "title", max_len=200)
        if body.description is not None:
            changes["description"] = validation.optional_text(body.description, "description", 2000)
        if body.exam_date is not None:
            if body.exam_date == "":
                changes["exam_date"] = None
            else:
                try:
                    changes["exam_date"] = dt.date.fromisoformat(body.exam_date)
                except ValueError:
                    raise Invalid("examDate", "must be a date (YYYY-MM-DD) or empty") from None
        async with self.db.transaction() as conn:
            await self.require_owner(conn, principal, deck_id)
            if body.pod_id is not None:
                changes["pod_id"] = (
                    await self._pod_to_share(principal, body.pod_id, conn) if body.pod_id else None
                )
            if changes:
                await study_db.update_deck(conn, deck_id, changes)
        return await self.deck(principal, deck_id)

    async def delete_deck(self, principal: Principal, deck_id: uuid.UUID) -> None:
        async with self.db.transaction() as conn:
            await self.require_owner(conn, principal, deck_id)
            uploads = await study_db.delete_deck(conn, deck_id)
            gone = [await uploads_db.delete(conn, u) for u in uploads]
        for row in gone:
            if row is not None:
                await self.uploads.discard(row)

    # --- cards -----------------------------------------------------------------------------

    async def _card_view(self, row: asyncpg.Record) -> Card:
        source = None
        if row["source_resource_id"] is not None and row["source_title"] is not None:
            source = Source(row["source_resource_id"], row["source_title"])
        return Card(
            id=row["id"],
            deck_id=row["deck_id"],
            front=row["front"],
            back=row["back"],
            tags=list(row["tags"] or []),
            status=row["status"],
            image=await self.uploads.link_for_row(row),
            source=source,
            source_session_id=row["source_session_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def card(self, principal: Principal, card_id: uuid.UUID) -> Card:
        row = await study_db.get_card(self.db.pool, principal.user_id, card_id)
        if row is None:
            raise NotFound("card not found")
        return await self._card_view(row)

    def _card_text(self, front: str, back: str, prefix: str = "") -> tuple[str, str]:
        return (
            validation.text(front, f"{prefix}front", max_len=MAX_FRONT),
            validation.text(back, f"{prefix}back", max_len=MAX_BACK),
        )

    async def _attach_image(
        self, conn: Conn, principal: Principal, raw: str, card_id: uuid.UUID
    ) -> uuid.UUID:
        upload_id = validation.parse_uuid(raw, "imageUploadId")
        row = await uploads_db.attach(conn, upload_id, principal.user_id, "card", card_id)
        if row is None:
            raise Invalid("imageUploadId", "is not an unused upload of yours")
        if not str(row["content_type"]).startswith("image/"):
            raise Invalid("imageUploadId", "must be an image")
        attached: uuid.UUID = row["id"]
        return attached

    async def add_card(self, principal: Principal, deck_id: uuid.UUID, body: CardCreate) -> Card:
        front, back = self._card_text(body.front, body.back)
        tags = validation.tags(body.tags)
        card_id = uuid.uuid4()
        async with self.db.transaction() as conn:
            await self.require_owner(conn, principal, deck_id)
            await study_db.insert_cards(
                conn,
                [
                    {
                        "id": card_id,
                        "deck_id": deck_id,
                        "front": front,
                        "back": back,
                        "tags": tags,
                        "status": "kept",
                        "created_by": principal.user_id,
                    }
                ],
            )
            if body.image_upload_id:
                image = await self._attach_image(conn, principal, body.image_upload_id, card_id)
                await study_db.update_card(conn, card_id, {"upload_id": image})
        return await self.card(principal, card_id)

    async def cards(self, principal: Principal, deck_id: uuid.UUID, query: CardQuery) -> CardPage:
        if not 1 <= query.limit <= MAX_CARDS_PAGE:
            raise Invalid("limit", f"must be between 1 and {MAX_CARDS_PAGE}")
        if query.status is not None:
            validation.one_of(query.status, "status", CARD_STATUSES)
        after = (
            cursors.decode(query.cursor, "study_cards", (dt.datetime, uuid.UUID))
            if query.cursor
            else None
        )
        await self.deck(principal, deck_id)
        rows = await study_db.cards_of(
            self.db.pool,
            principal.user_id,
            deck_id,
            status=query.status,
            after=after,
            limit=query.limit + 1,
        )
        cards = [await self._card_view(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = cursors.encode("study_cards", (cards[-1].created_at, cards[-1].id))
        return CardPage(cards, next_cursor)

    async def _owned_card(
        self, conn: Conn, principal: Principal, card_id: uuid.UUID
    ) -> asyncpg.Record:
        row = await study_db.get_card(conn, principal.user_id, card_id)
        if row is None:
            raise NotFound("card not found")
        await self.require_owner(conn, principal, row["deck_id"])
        return row

    async def update_card(self, principal: Principal, card_id: uuid.UUID, body: CardUpdate) -> Card:
        changes: dict[str, Any] = {}
        if body.front is not None:
            changes["front"] = validation.text(body.front, "front", max_len=MAX_FRONT)
        if body.back is not None:
            changes["back"] = validation.text(body.back, "back", max_len=MAX_BACK)
        if body.tags is not None:
            changes["tags"] = validation.tags(body.tags)
        if body.status is not None:
            changes["status"] = validation.one_of(body.status, "status", CARD_STATUSES)
        released = None
        async with self.db.transaction() as conn:
            row = await self._owned_card(conn, principal, card_id)
            if row["status"] == "kept" and changes.get("status") == "draft":
                raise Invalid("status", "a kept card cannot become a draft again")
            if row["status"] == "draft" and changes.get("status") == "kept":
                # its place among the deck's new cards: now, after those kept before it
                changes["kept_at"] = dt.datetime.now(dt.UTC)
            if body.image_upload_id is not None:
                if row["upload_id"] is not None:
                    released = await uploads_db.delete(conn, row["upload_id"])
                changes["upload_id"] = (
                    await self._attach_image(conn, principal, body.image_upload_id, card_id)
                    if body.image_upload_id
                    else None
                )
            if changes:
                await study_db.update_card(conn, card_id, changes)
        if released is not None:
            await self.uploads.discard(released)
        return await self.card(principal, card_id)

    async def delete_card(self, principal: Principal, card_id: uuid.UUID) -> None:
        released = None
        async with self.db.transaction() as conn:
            await self._owned_card(conn, principal, card_id)
            upload = await study_db.delete_card(conn, card_id)
            if upload is not None:
                released = await uploads_db.delete(conn, upload)
        if released is not None:
            await self.uploads.discard(released)

    async def keep(self, principal: Principal, deck_id: uuid.UUID, body: KeepRequest) -> KeepResult:
        ids = None
        if body.card_ids is not None:
            if len(body.card_ids) > MAX_CARDS_PAGE:
                raise Invalid("cardIds", f"at most {MAX_CARDS_PAGE} cards at a time")
            ids = [validation.parse_uuid(c, f"cardIds[{i}]") for i, c in enumerate(body.card_ids)]
        async with self.db.transaction() as conn:
            await self.require_owner(conn, principal, deck_id)
            return KeepResult(await study_db.keep_drafts(conn, deck_id, ids))

    # --- settings --------------------------------------------------------------------------

    async def settings(self, user_id: uuid.UUID) -> StudySettings:
        row = await study_db.settings_of(self.db.pool, user_id)
        if row is None:
            return StudySettings(scheduling.DEFAULT_RETENTION, scheduling.DEFAULT_NEW_PER_DAY)
        return StudySettings(row["desired_retention"], row["new_per_day"])

    async def update_settings(
        self, principal: Principal, body: StudySettingsUpdate
    ) -> StudySettings:
        current = await self.settings(principal.user_id)
        retention = current.desired_retention
        new_per_day = current.new_per_day
        if body.desired_retention is not None:
            if not 0.7 < body.desired_retention < 0.99:
                raise Invalid("desiredRetention", "must be more than 0.7 and less than 0.99")
            retention = body.desired_retention
        if body.new_per_day is not None:
            if not 0 <= body.new_per_day <= 1000:
                raise Invalid("newPerDay", "must be between 0 and 1000")
            new_per_day = body.new_per_day
        await study_db.save_settings(self.db.pool, principal.user_id, retention, new_per_day)
        return StudySettings(retention, new_per_day)

    # --- reviews ---------------------------------------------------------------------------

    def _checked(
        self, body: ReviewRequest, now: dt.datetime
    ) -> tuple[uuid.UUID, str, str, dt.datetime]:
        card_id = validation.parse_uuid(body.card_id, "cardId")
        rating = validation.one_of(body.rating, "rating", scheduling.RATINGS)
        client_id = validation.text(body.client_review_id, "clientReviewId", max_len=100)
        at = body.reviewed_at or now
        if at.tzinfo is None:
            raise Invalid("reviewedAt", "must give a time zone (Z or an offset)")
        at = at.astimezone(dt.UTC)
        if at > now + FUTURE_SLACK:
            raise Invalid("reviewedAt", "must not be in the future")
        if body.duration_ms is not None and not 0 <= body.duration_ms <= 3_600_000:
            raise Invalid("durationMs", "must be between 0 and 3600000")
        return card_id, rating, client_id, at

    async def review(
        self,
        principal: Principal,
        body: ReviewRequest,
        *,
        session_id: uuid.UUID | None = None,
        conn: Conn | None = None,
        after: OnCommit | None = None,
    ) -> ReviewResult:
        """Apply one review to the caller's own schedule of a card (once per client id); in
        the caller's transaction when `conn` is given."""
        now = dt.datetime.now(dt.UTC)
        card_id, rating, client_id, at = self._checked(body, now)
        if conn is not None:
            return await self._review(
                conn, after, principal, card_id, rating, at, client_id, body.duration_ms, session_id
            )
        async with unit(self.db) as (own, after):
            return await self._review(
                own, after, principal, card_id, rating, at, client_id, body.duration_ms, session_id
            )

    async def _review(
        self,
        conn: Conn,
        after: OnCommit | None,
        principal: Principal,
        card_id: uuid.UUID,
        rating: str,
        at: dt.datetime,
        client_id: str,
        duration_ms: int | None,
        session_id: uuid.UUID | None,
    ) -> ReviewResult:
        user_id = principal.user_id
        earlier = await study_db.review_by_client_id(conn, user_id, client_id)
        if earlier is not None:
            return self._stored(earlier, card_id)
        card = await study_db.get_card(conn, user_id, card_id)
        if card is None:
            raise NotFound("card not found")
        if card["status"] != "kept":
            raise Conflict("a draft card is studied once it is kept", code="card_is_draft")
        review_id = await study_db.claim_review(
            conn,
            user_id=user_id,
            card_id=card_id,
            client_review_id=client_id,
            rating=scheduling.RATINGS.index(rating) + 1,
            reviewed_at=at,
            duration_ms=duration_ms,
            session_id=session_id,
        )
        if review_id is None:  # the same review, committed meanwhile by a concurrent sync
            earlier = await study_db.review_by_client_id(conn, user_id, client_id)
            if earlier is None:
                raise Conflict("the review is being stored; retry", code="review_in_progress")
            return self._stored(earlier, card_id)
        settings = await self.settings(user_id)
        state = await study_db.lock_state(conn, user_id, card_id, card["deck_id"], at)
        # Offline reviews may arrive out of order: one done before the card's last review
        # counts as done just after it (FSRS cannot go back in time).
        if state["last_review"] is not None and at < state["last_review"]:
            at = state["last_review"]
        exam = None
        if card["exam_date"] is not None:
            tz = scheduling.zone(await study_db.user_zone(conn, user_id))
            exam = scheduling.exam_start(card["exam_date"], tz)
        done = scheduling.review(
            state["fsrs"],
            rating,
            at,
            retention=settings.desired_retention,
            exam=exam,
            duration_ms=duration_ms,
        )
        stored = dict(done.card.to_dict())
        await study_db.save_state(
            conn, user_id, card_id, fsrs=stored, due=done.due, last_review=at, lapsed=done.lapsed
        )
        await study_db.finish_review(
            conn,
            review_id,
            state=done.state,
            due=done.due,
            stability=done.card.stability,
            difficulty=done.card.difficulty,
        )
        meta: dict[str, Any] = {
            "cardId": str(card_id),
            "deckId": str(card["deck_id"]),
            "rating": rating,
            "state": done.state,
        }
        if duration_ms is not None:
            meta["durationMs"] = duration_ms
        await self.analytics.record(
            conn,
            user_id,
            Kind.CARD_REVIEWED,
            occurred_at=at,
            pod_id=card["pod_id"],
            session_id=session_id,
            value=float(scheduling.RATINGS.index(rating) + 1),
            meta=meta,
            dedupe_key=client_id,
            after=after,
        )
        return ReviewResult(
            client_review_id=client_id,
            card_id=card_id,
            rating=rating,
            reviewed_at=at,
            state=done.state,
            due=done.due,
            stability=done.card.stability,
            difficulty=done.card.difficulty,
        )

    @staticmethod
    def _stored(row: asyncpg.Record, card_id: uuid.UUID) -> ReviewResult:
        if row["card_id"] != card_id:
            raise Conflict(
                "this clientReviewId was already used for another card",
                code="review_id_reused",
            )
        return ReviewResult(
            client_review_id=row["client_review_id"],
            card_id=row["card_id"],
            rating=scheduling.RATINGS[row["rating"] - 1],
            reviewed_at=row["reviewed_at"],
            state=row["state"] or "learning",
            due=row["due_after"] or row["reviewed_at"],
            stability=row["stability"],
            difficulty=row["difficulty"],
            duplicate=True,
        )

    async def review_batch(self, principal: Principal, body: BatchRequest) -> BatchResult:
        """Each review on its own (its own transaction): one bad item never fails the others."""
        if len(body.reviews) > MAX_BATCH:
            raise Invalid("reviews", f"at most {MAX_BATCH} reviews at a time")
        results: list[BatchItem] = []
        for index, raw in enumerate(body.reviews):
            client_id = raw.get("clientReviewId") if isinstance(raw, dict) else None
            client = client_id if isinstance(client_id, str) else None
            try:
                item = validation.convert(
                    raw, ReviewRequest, strict=False, within=f"reviews[{index}]"
                )
                result = await self.review(principal, item)
            except AppError as exc:
                field = exc.field if isinstance(exc, Invalid) else None
                results.append(
                    BatchItem(
                        index, client, exc.status, error=ItemError(exc.code, exc.message, field)
                    )
                )
                continue
            results.append(BatchItem(index, client, 200, result=result))
        return BatchResult(results)

    # --- what is due -----------------------------------------------------------------------

    async def due(self, principal: Principal, query: DueQuery) -> DueList:
        """Everything due before the end of the user's today (their `timezone`), most overdue
        first, then the new cards offered today."""
        if not 1 <= query.limit <= MAX_DUE:
            raise Invalid("limit", f"must be between 1 and {MAX_DUE}")
        deck_id = _uuid_or_none(query.deck_id, "deckId")
        pool, user_id = self.db.pool, principal.user_id
        decks = await study_db.visible_decks(pool, user_id, deck_id)
        if deck_id is not None and not decks:
            raise NotFound("deck not found")
        context = await study_db.study_context(pool, user_id)
        zone_name = context["timezone"] if context else "UTC"
        new_per_day = (
            context["new_per_day"]
            if context and context["new_per_day"] is not None
            else scheduling.DEFAULT_NEW_PER_DAY
        )
        now = dt.datetime.now(dt.UTC)
        today, start, end = scheduling.local_day(now, scheduling.zone(zone_name))
        titles = {d["id"]: d["title"] for d in decks}
        ids = list(titles)
        reviews = await study_db.due_reviews(pool, user_id, end, ids, query.limit)
        review_count = (
            len(reviews)
            if len(reviews) < query.limit
            else await study_db.due_count(pool, user_id, end, ids)
        )
        cards = [
            DueCard(
                r["id"], r["deck_id"], titles[r["deck_id"]], r["front"], r["back"],
                list(r["tags"]), scheduling.card_state(r["fsrs"]), r["due"],
                await self.uploads.link_for_row(r),
            )
            for r in reviews
        ]  # fmt: skip
        room = query.limit - len(cards)
        new_count = 0
        if room > 0:
            # exam decks' new cards all at once (front-loading); the others within the limit
            exams = [
                d["id"] for d in decks if d["exam_date"] is not None and d["exam_date"] > today
            ]
            others = [i for i in ids if i not in set(exams)]
            fresh = await study_db.new_cards(pool, user_id, exams, room)
            started = await study_db.started_since(pool, user_id, start) if others else 0
            capped = max(0, min(room - len(fresh), new_per_day - started))
            fresh += await study_db.new_cards(pool, user_id, others, capped)
            for r in fresh:
                cards.append(
                    DueCard(
                        r["id"], r["deck_id"], titles[r["deck_id"]], r["front"], r["back"],
                        list(r["tags"]), "new", None, await self.uploads.link_for_row(r),
                    )
                )  # fmt: skip
                new_count += 1
        return DueList(zone_name, today, now, end, review_count, new_count, cards)

    # --- Anki-compatible text ----------------------------------------------------------------

    async def export_text(self, principal: Principal, deck_id: uuid.UUID) -> tuple[str, str]:
        """The deck's kept cards as Anki's tab-separated text (front, back, tags), and its
        title."""
        deck = await self.deck(principal, deck_id)
        rows = await study_db.all_cards(self.db.pool, deck_id, "kept")
        return anki_text(rows), deck.title

    async def import_text(
        self, principal: Principal, deck_id: uuid.UUID, text: str, *, separator: str = "\t"
    ) -> ImportResult:
        parsed, skipped = parse_anki(text, separator)
        rows: list[dict[str, Any]] = []
        for line, front, back, tags in parsed:
            try:
                f, b = self._card_text(front, back)
                t = validation.tags(tags)
            except Invalid as exc:
                skipped.append(ImportSkipped(line, exc.message))
                continue
            rows.append(
                {"deck_id": deck_id, "front": f, "back": b, "tags": t, "status": "kept",
                 "created_by": principal.user_id}
            )  # fmt: skip
        if len(rows) > MAX_IMPORT_ROWS:
            raise Invalid("file", f"at most {MAX_IMPORT_ROWS} cards at a time")
        async with self.db.transaction() as conn:
            await self.require_owner(conn, principal, deck_id)
            await study_db.insert_cards(conn, rows)
        return ImportResult(len(rows), skipped)


# --- the text format -------------------------------------------------------------------------

_SEPARATORS = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def anki_text(rows: list[asyncpg.Record] | list[dict[str, Any]]) -> str:
    """Anki's "Notes in Plain Text" with headers: fields quoted as CSV when they hold a tab, a
    quote or a line break; tags space-separated in the third column."""
    out = io.StringIO()
    out.write("#separator:tab\n#html:false\n#tags column:3\n")
    writer = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for r in rows:
        writer.writerow([r["front"], r["back"], " ".join(r["tags"] or [])])
    return out.getvalue()


def parse_anki(
    text: str, separator: str = "\t"
) -> tuple[list[tuple[int, str, str, list[str]]], list[ImportSkipped]]:
    """(line, front, back, tags) for each note of Anki's text export, and what was skipped.
    Header lines (`#separator:`, `#html:`, `#tags column:`, any other `#key:value`) are read or
    tolerated; without `#separator:`, `separator` (a tab, or a comma for CSV) is used."""
    tags_column = 3
    body_start = 0
    lines = text.splitlines(keepends=True)
    for i, header in enumerate(lines):
        if not header.startswith("#"):
            break
        body_start = i + 1
        key, _, value = header[1:].strip().partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "separator":
            separator = _SEPARATORS.get(value.lower(), value[:1] or "\t")
        elif key == "tags column" and value.isdigit():
            tags_column = int(value)
    reader = csv.reader(io.StringIO("".join(lines[body_start:])), delimiter=separator)
    notes: list[tuple[int, str, str, list[str]]] = []
    skipped: list[ImportSkipped] = []
    try:
        for fields in reader:
            line = body_start + reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) < 2:
                skipped.append(ImportSkipped(line, "needs a front and a back"))
                continue
            tags: list[str] = []
            if len(fields) >= tags_column >= 3:
                tags = fields[tags_column - 1].split()
            notes.append((line, fields[0], fields[1], tags))
    except csv.Error as exc:
        skipped.append(ImportSkipped(body_start + reader.line_num, f"unreadable: {exc}"))
    return notes, skipped


# the application's key for what this module provides (typed app state)
STUDY = web.AppKey("study", StudyService)
