"""Moderation of what users publish: posts, comments and session messages.

The owning area calls it before storing anything:

    verdict = await moderation.review(author, "message", text, ModerationContext(session_id=s))
    if not verdict.allowed:
        held = await moderation.hold(author, "message", text, snapshot, verdict, context)
        raise held.error(field="body")          # 422 held_for_review, with the reason

or, in one step, `await moderation.screen(...)`, which raises that error when it holds.

Local rules run first and cost no I/O on chat (blocked words, link spam, the same message again
and again); posts also count the author's posts of the last hour (more than
MODERATION_POSTS_PER_HOUR is held) and compare them with their recent posts (pg_trgm similarity
above 0.9, the spec's "duplicate content"), comments likewise. Only content the local rules let
through is sent to the OpenAI moderation endpoint, when AI is configured, with a short timeout;
if that call fails the local verdict stands (the failure is logged and counted): a moderation
outage must not stop every chat in the product, and the local rules still apply.

Held content waits in `moderation_queue` with a snapshot of what would have been stored. A
reviewer approves it (the owning area's registered publisher stores and publishes it then, e.g.
a session message gets the room's next sequence number) or rejects it; the author is notified
either way. Reviewers: platform moderators for everything, pod moderators (and up) for their
pods' content, a session's organizer for its messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..config import Settings
from ..errors import AppError, Conflict, Forbidden, HeldForReview, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra.ai_client import AIClient
from ..infra.observe import NoMetrics, ProductMetrics
from ..infra.pool import Database
from ..notifications.service import NewNotification, NotificationService
from ..pods.service import PodService, ranks_at_least
from . import db as moderation_db
from . import rules

log = logging.getLogger(__name__)

ContentKind = Literal["post", "comment", "message"]
CONTENT_KINDS: tuple[str, ...] = ("post", "comment", "message")
STATUSES = ("pending", "approved", "rejected")
SIMILAR = 0.9  # the spec's "similarity > 0.9" for duplicate content
MESSAGE_REPEATS = 2  # the same chat text a third time within 10 minutes is held
MIN_REPEAT_CHARS = 8  # "ok", "thanks!" and the like may be said as often as one likes
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class ModerationContext:
    pod_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str | None = None
    categories: tuple[str, ...] = ()
    rule: str | None = None  # blocked_words, link_spam, repeated_content, post_rate, openai


ALLOWED = Verdict(True)


@dataclass(frozen=True, slots=True)
class HeldContent:
    """A held item as its owning area gets it back on approval."""

    id: uuid.UUID
    kind: str
    author_id: uuid.UUID
    author_username: str
    pod_id: uuid.UUID | None
    session_id: uuid.UUID | None
    content: str
    snapshot: dict[str, Any]


# Stores and publishes approved content; returns the id of what it stored (or None).
Publisher = Callable[[HeldContent], Awaitable[uuid.UUID | None]]


class HeldItem(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    content_type: str
    author_id: uuid.UUID
    author_username: str
    pod_id: uuid.UUID | None
    session_id: uuid.UUID | None
    content: str
    snapshot: dict[str, Any]
    reason: str
    rule: str
    categories: list[str]
    status: str
    reviewer_id: uuid.UUID | None
    review_note: str | None
    reviewed_at: dt.datetime | None
    published_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> HeldItem:
        return cls(**{f: row[f] for f in cls.__struct_fields__})

    def error(self, field: str = "content") -> HeldForReview:
        """The error that tells the author their content is held, and why."""
        what = self.content_type
        verb = "was rejected by a moderator" if self.status == "rejected" else "is held for review"
        return HeldForReview(
            f"your {what} {verb}: {self.reason}",
            field=field,
            held={
                "id": str(self.id),
                "status": self.status,
                "reason": self.reason,
                "rule": self.rule,
                "categories": self.categories,
            },
        )


class HeldPage(msgspec.Struct, rename="camel"):
    items: list[HeldItem]
    next_cursor: str | None


class HeldQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    pod_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    status: str | None = "pending"
    kind: str | None = None
    mine: bool = False
    limit: int = 20
    cursor: str | None = None


class ReviewBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    reason: str | None = None


class SessionDirectory(Protocol):
    """What moderation needs to know of study sessions (the sessions area provides it; sessions
    use moderation, so moderation must not import them)."""

    async def visible_session(
        self, session_id: uuid.UUID, user_id: uuid.UUID
    ) -> asyncpg.Record | None: ...


class ModerationService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        ai: AIClient,
        pods: PodService,
        notifications: NotificationService,
        metrics: ProductMetrics | None = None,
        sessions: SessionDirectory | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.ai = ai
        self.pods = pods
        self.sessions = sessions
        self.notifications = notifications
        self.metrics: ProductMetrics = metrics or NoMetrics()
        self.blocked = rules.blocked_words_pattern(settings.moderation_blocked_words)
        self.repeats = rules.RepeatTracker()
        self._publishers: dict[str, Publisher] = {}

    def register_publisher(self, kind: str, publisher: Publisher) -> None:
        """The owning area's way to store approved content of `kind` (one per kind)."""
        if kind not in CONTENT_KINDS:
            raise ValueError(f"unknown content kind {kind!r}")
        self._publishers[kind] = publisher

    # --- reviewing new content ------------------------------------------------------------

    def _local(self, kind: str, text: str) -> Verdict:
        word = rules.find_blocked(text, self.blocked)
        if word is not None:
            return Verdict(False, f'it contains a blocked word ("{word}")', rule="blocked_words")
        links = rules.count_links(text)
        if links > self.settings.moderation_max_links:
            return Verdict(
                False,
                f"it contains {links} links; at most {self.settings.moderation_max_links} "
                "are allowed",
                rule="link_spam",
            )
        return ALLOWED

    async def _history(self, author: Principal, kind: str, text: str) -> Verdict:
        """Rules that look at what the author posted before (posts and comments: the database;
        chat messages: this node's memory)."""
        if kind == "post":
            row = await moderation_db.recent_posts(self.db.pool, author.user_id, text)
            limit = self.settings.moderation_posts_per_hour
            if row["last_hour"] >= limit:
                return Verdict(
                    False, f"you posted more than {limit} times in the last hour", rule="post_rate"
                )
            if row["similarity"] > SIMILAR:
                return Verdict(
                    False, "it repeats a post you made recently", rule="repeated_content"
                )
        elif kind == "comment":
            similarity = await moderation_db.comment_similarity(self.db.pool, author.user_id, text)
            if similarity > SIMILAR:
                return Verdict(
                    False, "it repeats a comment you made recently", rule="repeated_content"
                )
        return ALLOWED

    async def _upstream(self, kind: str, text: str) -> Verdict:
        if not self.ai.available:
            return ALLOWED
        try:
            result = await self.ai.moderate(text)
        except AppError as exc:
            log.warning("moderation endpoint failed (%s); the local rules' verdict stands", exc)
            self.metrics.moderated(kind, "fallback")
            return ALLOWED
        if not result.flagged:
            return ALLOWED
        named = ", ".join(c.replace("/", " / ") for c in result.categories) or "unsafe content"
        return Verdict(
            False,
            f"automated moderation flagged it ({named})",
            categories=result.categories,
            rule="openai",
        )

    async def review(
        self,
        author: Principal,
        kind: ContentKind,
        text: str,
        context: ModerationContext | None = None,
        *,
        dedupe_key: str | None = None,
        history: bool = True,
        upstream: bool = True,
    ) -> Verdict:
        """Decide whether `text` may be published now. Stores nothing (see `hold`).

        `dedupe_key` identifies a resend of the same content (a chat message's client id), so
        a retry is not taken for a repeat. `history=False` skips the rules about the author's
        recent content (posting rate, near-duplicates): for an edit of existing content, which
        would otherwise be taken for a repeat of itself. `upstream=False` skips the OpenAI
        check (chat in CHAT_AI_MODERATION=after mode runs it after delivery: `upstream_verdict`)."""
        if kind not in CONTENT_KINDS:
            raise ValueError(f"unknown content kind {kind!r}")
        verdict = self._local(kind, text)
        digest = rules.fingerprint(text)
        repeatable = kind == "message" and rules.meaningful_length(text) >= MIN_REPEAT_CHARS
        author_key = str(author.user_id)
        if (
            verdict.allowed
            and repeatable
            and self.repeats.repeats(author_key, kind, digest, dedupe_key) >= MESSAGE_REPEATS
        ):
            verdict = Verdict(
                False, "you sent the same message several times in a row", rule="repeated_content"
            )
        if verdict.allowed and history:
            verdict = await self._history(author, kind, text)
        if verdict.allowed and upstream and text.strip():
            verdict = await self._upstream(kind, text)
        if verdict.allowed:
            if repeatable:
                self.repeats.record(author_key, kind, digest, dedupe_key)
            self.metrics.moderated(kind, "allowed")
        else:
            self.metrics.moderated(kind, f"held:{verdict.rule}")
        return verdict

    async def hold(
        self,
        author: Principal,
        kind: ContentKind,
        text: str,
        snapshot: dict[str, Any],
        verdict: Verdict,
        context: ModerationContext | None = None,
        *,
        dedupe_key: str | None = None,
    ) -> HeldItem:
        """Queue content for review. `snapshot` is what the owning area would have stored; its
        publisher gets it back on approval. A `dedupe_key` already queued returns that item."""
        context = context or ModerationContext()
        pod_id = context.pod_id
        if pod_id is None and context.session_id is not None:
            pod_id = await moderation_db.session_pod(self.db.pool, context.session_id)
        held_id = await moderation_db.insert_held(
            self.db.pool,
            {
                "content_type": kind,
                "author_id": author.user_id,
                "pod_id": pod_id,
                "session_id": context.session_id,
                "content": text,
                "snapshot": snapshot,
                "reason": verdict.reason or "held for review",
                "rule": verdict.rule or "manual",
                "categories": verdict.categories,
                "dedupe_key": dedupe_key,
            },
        )
        row = await moderation_db.get_held(self.db.pool, held_id)
        if row is None:
            raise RuntimeError("the statement returned no row")
        return HeldItem.from_row(row)

    async def screen(
        self,
        author: Principal,
        kind: ContentKind,
        text: str,
        snapshot: dict[str, Any],
        context: ModerationContext | None = None,
        *,
        dedupe_key: str | None = None,
        field: str = "content",
        upstream: bool = True,
    ) -> None:
        """Review, and hold what may not be published: raises HeldForReview (422, naming
        `field`, with the reason) when held. A resend of content already approved passes (its
        area finds it stored by the same key)."""
        verdict = await self.review(
            author, kind, text, context, dedupe_key=dedupe_key, upstream=upstream
        )
        if verdict.allowed:
            return
        held = await self.hold(
            author, kind, text, snapshot, verdict, context, dedupe_key=dedupe_key
        )
        if held.status == "approved":
            return
        raise held.error(field)

    @property
    def checks_upstream(self) -> bool:
        """Whether content goes to the OpenAI moderation endpoint (AI is configured)."""
        return self.ai.available

    async def upstream_verdict(self, kind: ContentKind, text: str) -> Verdict:
        """The OpenAI check alone, for content already published (chat in `after` mode)."""
        verdict = await self._upstream(kind, text)
        if not verdict.allowed:
            self.metrics.moderated(kind, f"retracted:{verdict.rule}")
        return verdict

    async def hold_published(
        self,
        author: Principal,
        kind: ContentKind,
        text: str,
        snapshot: dict[str, Any],
        verdict: Verdict,
        context: ModerationContext,
        *,
        dedupe_key: str | None = None,
    ) -> HeldItem:
        """Queue content that was published and has just been taken down for review; its
        author is told. Approving it restores it (its area's publisher sees the snapshot)."""
        held = await self.hold(
            author, kind, text, snapshot, verdict, context, dedupe_key=dedupe_key
        )
        try:
            await self.notifications.notify(
                NewNotification(
                    recipient_id=author.user_id,
                    notification_type="moderation_removed",
                    title=f"Your {kind} was removed pending review",
                    message=verdict.reason,
                    action_url=f"/sessions/{context.session_id}" if context.session_id else None,
                    metadata={"heldId": str(held.id), "contentType": kind},
                )
            )
        except Exception:
            log.exception("telling the author about removed %s %s failed", kind, held.id)
        return held

    # --- reviewing the queue --------------------------------------------------------------

    async def _may_review(self, principal: Principal, row: asyncpg.Record) -> bool:
        if principal.is_platform_moderator:
            return True
        return await moderation_db.can_review(self.db.pool, row["id"], principal.user_id)

    async def _visible(
        self, principal: Principal, held_id: uuid.UUID
    ) -> tuple[asyncpg.Record, bool]:
        """The item and whether the caller may decide it; 404 for anyone but its author and
        its reviewers."""
        row = await moderation_db.get_held(self.db.pool, held_id)
        if row is None:
            raise NotFound("held item not found")
        reviewer = await self._may_review(principal, row)
        if not reviewer and row["author_id"] != principal.user_id:
            raise NotFound("held item not found")
        return row, reviewer

    async def _check_session_reviewer(self, principal: Principal, session_id: uuid.UUID) -> None:
        if self.sessions is None:
            raise NotFound("session not found")
        session = await self.sessions.visible_session(session_id, principal.user_id)
        if session is None:
            raise NotFound("session not found")
        if session["organizer_id"] == principal.user_id:
            return
        if session["pod_id"] is not None:
            role = await self.pods.member_role(session["pod_id"], principal.user_id)
            if ranks_at_least(role, "moderator"):
                return
        raise Forbidden(
            "only the organizer and pod moderators review this session's messages",
            code="not_a_reviewer",
        )

    async def list_held(self, principal: Principal, query: HeldQuery) -> HeldPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        if query.status is not None and query.status != "all" and query.status not in STATUSES:
            raise Invalid("status", "must be one of: pending, approved, rejected, all")
        if query.kind is not None and query.kind not in CONTENT_KINDS:
            raise Invalid("kind", f"must be one of: {', '.join(CONTENT_KINDS)}")
        pod_id, session_id = query.pod_id, query.session_id
        before = (
            cursors.decode(query.cursor, "moderation_held", (dt.datetime, uuid.UUID))
            if query.cursor
            else None
        )
        everything = principal.is_platform_moderator
        if not query.mine and not everything:
            if pod_id is not None:
                await self.pods.require_member(principal, pod_id, "moderator")
            if session_id is not None:
                await self._check_session_reviewer(principal, session_id)
            # with a pod or session the caller reviews, show all of it
            everything = pod_id is not None or session_id is not None
        rows = await moderation_db.list_held(
            self.db.pool,
            principal.user_id,
            everything=everything,
            mine=query.mine,
            pod_id=pod_id,
            session_id=session_id,
            status=None if query.status == "all" else query.status,
            content_type=query.kind,
            before=before,
            limit=query.limit + 1,
        )
        items = [HeldItem.from_row(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = cursors.encode("moderation_held", (items[-1].created_at, items[-1].id))
        return HeldPage(items, next_cursor)

    async def get(self, principal: Principal, held_id: uuid.UUID) -> HeldItem:
        row, _ = await self._visible(principal, held_id)
        return HeldItem.from_row(row)

    async def _decide(
        self, principal: Principal, held_id: uuid.UUID, status: str, note: str | None
    ) -> asyncpg.Record:
        row, reviewer = await self._visible(principal, held_id)
        if not reviewer:
            raise Forbidden("only moderators decide on held content", code="not_a_reviewer")
        if row["status"] != "pending":
            raise Conflict(f"this item was already {row['status']}", code="already_reviewed")
        if status == "approved" and row["content_type"] not in self._publishers:
            raise Conflict(
                f"{row['content_type']}s cannot be published on this server yet",
                code="no_publisher",
            )
        if not await moderation_db.claim(self.db.pool, held_id, principal.user_id, status, note):
            raise Conflict("another moderator decided this item first", code="already_reviewed")
        return row

    async def approve(
        self, principal: Principal, held_id: uuid.UUID, note: str | None = None
    ) -> HeldItem:
        """Publish held content through its area; it stays pending if that fails."""
        note = _note(note, "reason")
        row = await self._decide(principal, held_id, "approved", note)
        held = HeldContent(
            id=row["id"],
            kind=row["content_type"],
            author_id=row["author_id"],
            author_username=row["author_username"],
            pod_id=row["pod_id"],
            session_id=row["session_id"],
            content=row["content"],
            snapshot=row["snapshot"],
        )
        try:
            published = await self._publishers[held.kind](held)
        except AppError as exc:
            # The content cannot be stored as it stands (its author left the pod, its post is
            # gone...): that is about the content, not about the reviewer. It stays pending.
            await moderation_db.unclaim(self.db.pool, held_id)
            raise Conflict(
                f"this {held.kind} cannot be published now: {exc.message}",
                code="cannot_publish",
                details=[{"field": "content", "reason": exc.message, "cause": exc.code}],
            ) from None
        except BaseException:
            await moderation_db.unclaim(self.db.pool, held_id)
            raise
        await moderation_db.set_published(self.db.pool, held_id, published)
        await self._tell_author(row, approved=True, note=note)
        return await self.get(principal, held_id)

    async def reject(
        self, principal: Principal, held_id: uuid.UUID, reason: str | None
    ) -> HeldItem:
        note = _note(reason, "reason")
        row = await self._decide(principal, held_id, "rejected", note)
        await self._tell_author(row, approved=False, note=note)
        return await self.get(principal, held_id)

    async def _tell_author(self, row: asyncpg.Record, *, approved: bool, note: str | None) -> None:
        what = row["content_type"]
        if approved:
            title = f"Your {what} was approved and published"
            message = note
        else:
            title = f"Your {what} was not approved"
            message = note or row["reason"]
        action = f"/sessions/{row['session_id']}" if row["session_id"] else None
        try:
            await self.notifications.notify(
                NewNotification(
                    recipient_id=row["author_id"],
                    notification_type="moderation_approved" if approved else "moderation_rejected",
                    title=title,
                    message=message,
                    action_url=action,
                    metadata={"heldId": str(row["id"]), "contentType": what},
                )
            )
        except Exception:
            log.exception("telling the author about held item %s failed", row["id"])


def _note(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value.strip()) > MAX_REASON:
        raise Invalid(field, f"must be at most {MAX_REASON} characters")
    return value.strip()


# the application's key for what this module provides (typed app state)
MODERATION = web.AppKey("moderation", ModerationService)
