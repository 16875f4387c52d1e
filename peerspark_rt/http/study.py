"""/api/decks, /api/cards and /api/study: flashcard decks and cards, FSRS reviews, what is
due today, deck generation by the assistant, Anki text import/export, weekly goals, and live
review in a session room."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from ..errors import BadRequest, UnsupportedMediaType
from ..protocol import Card as CardFrame
from ..study.generate import DECK_GENERATOR, Generated, GenerateRequest
from ..study.goals import GOALS, Goals, GoalsUpdate
from ..study.live import LIVE_REVIEWS, LiveAnswer, LiveAnswered, LiveStart, LiveState
from ..study.service import (
    STUDY,
    BatchRequest,
    BatchResult,
    Card,
    CardCreate,
    CardPage,
    CardQuery,
    CardUpdate,
    Deck,
    DeckCreate,
    DeckList,
    DeckUpdate,
    DueList,
    DueQuery,
    ImportResult,
    KeepRequest,
    KeepResult,
    ReviewRequest,
    ReviewResult,
    StudySettings,
    StudySettingsUpdate,
)
from .contract import Raw, operation, signed_in
from .middleware import principal
from .render import path_id, read_whole

routes = web.RouteTableDef()

MAX_IMPORT_BYTES = 2 * 1024 * 1024

# The reference deck is the pod owner's, shared with the pod: its members read and study it,
# only the owner changes it, and nobody else sees it.
_READERS = signed_in(404, member=200, moderator=200, owner=200)


def _owner_only(status: int) -> dict[str, int]:
    return {"member": 403, "moderator": 403, "owner": status}


_AI_ERRORS = (403, 404, 409, 429, 502, 503, 504)


def _ai_configured(request: web.Request) -> None:
    """503 before anything else when AI is off or has no key."""
    request.app[DECK_GENERATOR].ai.require()


# --- decks -----------------------------------------------------------------------------------


@routes.get("/api/decks")
@operation(tag="study", access=signed_in(200))
async def list_decks(request: web.Request) -> DeckList:
    """The caller's decks and those shared with their pods."""
    return await request.app[STUDY].decks(principal(request))


@routes.post("/api/decks")
@operation(tag="study", status=201, access=signed_in(201, outsider=422, banned=422, admin=422))
async def create_deck(request: web.Request, body: DeckCreate) -> Deck:
    """A new deck, the caller's own or shared with a pod they belong to (`podId`)."""
    return await request.app[STUDY].create_deck(principal(request), body)


@routes.post("/api/decks/generate")
@operation(
    tag="study",
    status=201,
    errors=_AI_ERRORS,
    precheck=_ai_configured,
    access=signed_in(201),
)
async def generate_deck(request: web.Request, body: GenerateRequest) -> Generated:
    """Draft cards made by the assistant from a resource, a session's chat or a pasted text.

    Give exactly one of `resourceId` (a resource the caller may read), `sessionId` (a session
    whose chat the caller may read) or `text`. The drafts go into `deckId` (the caller's) or a
    new deck; keep them with POST /api/decks/{deckId}/keep or PATCH /api/cards/{cardId}.
    Counted against the daily AI token quota; 503 when AI is not configured.
    """
    return await request.app[DECK_GENERATOR].generate(principal(request), body)


@routes.get("/api/decks/{deckId}")
@operation(tag="study", access=_READERS)
async def get_deck(request: web.Request) -> Deck:
    """One deck."""
    deck_id = path_id(request, "deckId", "deck")
    return await request.app[STUDY].deck(principal(request), deck_id)


@routes.patch("/api/decks/{deckId}")
@operation(tag="study", errors=(403,), access=signed_in(404, **_owner_only(200)))
async def update_deck(request: web.Request, body: DeckUpdate) -> Deck:
    """Change a deck (its owner): title, description, `podId` ("" unshares), `examDate`
    (YYYY-MM-DD, "" clears)."""
    deck_id = path_id(request, "deckId", "deck")
    return await request.app[STUDY].update_deck(principal(request), deck_id, body)


@routes.delete("/api/decks/{deckId}")
@operation(tag="study", errors=(403,), access=signed_in(404, **_owner_only(204)))
async def delete_deck(request: web.Request) -> None:
    """Delete a deck with its cards and everyone's schedules of them (its owner)."""
    deck_id = path_id(request, "deckId", "deck")
    await request.app[STUDY].delete_deck(principal(request), deck_id)


@routes.get("/api/decks/{deckId}/cards")
@operation(tag="study", access=_READERS)
async def deck_cards(request: web.Request, query: CardQuery) -> CardPage:
    """A deck's cards, oldest first (`status`: draft or kept)."""
    deck_id = path_id(request, "deckId", "deck")
    return await request.app[STUDY].cards(principal(request), deck_id, query)


@routes.post("/api/decks/{deckId}/cards")
@operation(tag="study", status=201, errors=(403,), access=signed_in(404, **_owner_only(201)))
async def add_card(request: web.Request, body: CardCreate) -> Card:
    """Add a card (kept) to the caller's deck; `imageUploadId`: an image from POST /api/upload."""
    deck_id = path_id(request, "deckId", "deck")
    return await request.app[STUDY].add_card(principal(request), deck_id, body)


@routes.post("/api/decks/{deckId}/keep")
@operation(tag="study", errors=(403,), access=signed_in(404, **_owner_only(200)))
async def keep_cards(request: web.Request, body: KeepRequest) -> KeepResult:
    """Keep draft cards (`cardIds`, or every draft of the deck)."""
    deck_id = path_id(request, "deckId", "deck")
    return await request.app[STUDY].keep(principal(request), deck_id, body)


@routes.get("/api/decks/{deckId}/export")
@operation(
    tag="study",
    raw={200: Raw("text/plain", "the deck's kept cards as Anki's tab-separated text")},
    access=_READERS,
)
async def export_deck(request: web.Request) -> web.Response:
    """The deck as Anki-compatible text: `#separator:tab`, `#html:false`, `#tags column:3`
    headers, then front, back and space-separated tags per line."""
    deck_id = path_id(request, "deckId", "deck")
    text, title = await request.app[STUDY].export_text(principal(request), deck_id)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(title)}.txt"},
    )


@routes.post("/api/decks/{deckId}/import")
@operation(
    tag="study",
    errors=(400, 403, 413, 415, 422),
    raw_body={
        "text/plain": {"type": "string"},
        "text/tab-separated-values": {"type": "string"},
        "text/csv": {"type": "string"},
    },
    access=signed_in(404, **_owner_only(200)),
)
async def import_deck(request: web.Request) -> ImportResult:
    """Add cards from Anki's text export (tab-separated front, back, tags; its `#` header
    lines are read or tolerated; `text/csv` without a `#separator:` line is comma-separated).
    Lines that are not usable cards are listed as skipped."""
    deck_id = path_id(request, "deckId", "deck")
    if request.content_type not in ("text/plain", "text/tab-separated-values", "text/csv"):
        raise UnsupportedMediaType(
            "send the cards as text/plain",
            details=[{"field": "body", "reason": "expected text/plain"}],
        )
    raw = await read_whole(request, MAX_IMPORT_BYTES, "deck files")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(
            "the file is not UTF-8 text", details=[{"field": "body", "reason": "not UTF-8"}]
        ) from None
    separator = "," if request.content_type == "text/csv" else "\t"
    return await request.app[STUDY].import_text(
        principal(request), deck_id, text, separator=separator
    )


# --- cards -----------------------------------------------------------------------------------


@routes.get("/api/cards/{cardId}")
@operation(tag="study", access=_READERS)
async def get_card(request: web.Request) -> Card:
    """One card."""
    card_id = path_id(request, "cardId", "card")
    return await request.app[STUDY].card(principal(request), card_id)


@routes.patch("/api/cards/{cardId}")
@operation(tag="study", errors=(403,), access=signed_in(404, **_owner_only(200)))
async def update_card(request: web.Request, body: CardUpdate) -> Card:
    """Edit a card (its deck's owner); `"status": "kept"` keeps a draft; `imageUploadId` sets
    or ("" ) removes its image."""
    card_id = path_id(request, "cardId", "card")
    return await request.app[STUDY].update_card(principal(request), card_id, body)


@routes.delete("/api/cards/{cardId}")
@operation(tag="study", errors=(403,), access=signed_in(404, **_owner_only(204)))
async def delete_card(request: web.Request) -> None:
    """Delete a card (its deck's owner)."""
    card_id = path_id(request, "cardId", "card")
    await request.app[STUDY].delete_card(principal(request), card_id)


# --- reviews, due, settings, goals -----------------------------------------------------------


@routes.post("/api/study/reviews")
@operation(
    tag="study",
    errors=(404, 409),
    access=signed_in(404, **{k: 200 for k in ("member", "moderator", "owner")}),
)
async def review(request: web.Request, body: ReviewRequest) -> ReviewResult:
    """Grade a card (again, hard, good, easy) on the caller's own schedule.

    Idempotent by `clientReviewId`: sent again (an offline review synced twice) it changes
    nothing and answers the first result with `duplicate: true`. `reviewedAt` is when the
    review was done (offline), at most 5 minutes ahead of the server's clock.
    """
    return await request.app[STUDY].review(principal(request), body)


@routes.post("/api/study/reviews/batch")
@operation(tag="study", access=signed_in(200))
async def review_batch(request: web.Request, body: BatchRequest) -> BatchResult:
    """Sync many reviews (an offline phone's queue, in order): each item is applied on its own
    and answered with its own status, so one bad item never fails the others."""
    return await request.app[STUDY].review_batch(principal(request), body)


@routes.get("/api/study/due")
@operation(tag="study", access=signed_in(200))
async def due(request: web.Request, query: DueQuery) -> DueList:
    """What is due before the end of the caller's today (in their time zone), most overdue
    first, then today's new cards."""
    return await request.app[STUDY].due(principal(request), query)


@routes.get("/api/study/settings")
@operation(tag="study", access=signed_in(200))
async def study_settings(request: web.Request) -> StudySettings:
    """The caller's desired retention (default 0.9) and new cards per day (default 20)."""
    return await request.app[STUDY].settings(principal(request).user_id)


@routes.put("/api/study/settings")
@operation(tag="study", access=signed_in(200))
async def update_study_settings(request: web.Request, body: StudySettingsUpdate) -> StudySettings:
    """Change the desired retention (0.7-0.99 exclusive) or new cards per day (0-1000)."""
    return await request.app[STUDY].update_settings(principal(request), body)


@routes.get("/api/study/goals")
@operation(tag="study", access=signed_in(200))
async def goals(request: web.Request) -> Goals:
    """This week's goals and progress (minutes studied, cards reviewed, sessions attended)."""
    return await request.app[GOALS].goals(principal(request).user_id)


@routes.put("/api/study/goals")
@operation(tag="study", access=signed_in(200))
async def update_goals(request: web.Request, body: GoalsUpdate) -> Goals:
    """Set the weekly goals (0: none) and whether to be reminded when behind."""
    return await request.app[GOALS].update(principal(request), body)


# --- live review in a session room -----------------------------------------------------------

# The reference session is the pod owner's (organizer); members take part in it.
_ORGANIZER = signed_in(404, member=403, moderator=403, owner=200)


@routes.get("/api/study/live/{sessionId}")
@operation(tag="study", errors=(403,), access=_READERS)
async def live_state(request: web.Request) -> LiveState:
    """The session's live review: the card shown (or ended) and its tally so far."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[LIVE_REVIEWS].state(principal(request), session_id)


@routes.post("/api/study/live/{sessionId}")
@operation(
    tag="study",
    status=201,
    errors=(403, 409),
    access=signed_in(404, member=403, moderator=403, owner=201),
)
async def live_start(request: web.Request, body: LiveStart) -> CardFrame:
    """Start a live review of a deck shared with the session's pod (the organizer): the first
    card goes to the room as a `card` frame."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[LIVE_REVIEWS].start(principal(request), session_id, body)


@routes.post("/api/study/live/{sessionId}/next")
@operation(tag="study", errors=(403, 409), access=_ORGANIZER)
async def live_next(request: web.Request) -> CardFrame:
    """Show the next card (the organizer); after the last one the review ends."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[LIVE_REVIEWS].advance(principal(request), session_id, end=False)


@routes.post("/api/study/live/{sessionId}/end")
@operation(tag="study", errors=(403, 409), access=_ORGANIZER)
async def live_end(request: web.Request) -> CardFrame:
    """End the live review (the organizer)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[LIVE_REVIEWS].advance(principal(request), session_id, end=True)


@routes.post("/api/study/live/{sessionId}/answer")
@operation(tag="study", errors=(403, 409), access=_READERS)
async def live_answer(request: web.Request, body: LiveAnswer) -> LiveAnswered:
    """Answer the card shown (`round`, `rating`): once per member; updates the caller's own
    schedule of the card, and the room gets the new `card_tally`."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[LIVE_REVIEWS].answer(principal(request), session_id, body)
