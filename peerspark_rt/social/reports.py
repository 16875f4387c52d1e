"""Content reports and the moderation that follows (spec: handleContentReport).

A user reports something they can see (not their own). When a piece of content's pending
reports weigh REPORT_THRESHOLD together (each weighs by its reporter's standing, see
`reporter_weight`) it is hidden pending review (out of every read path but its
author's) and the moderators are notified: the moderators, admins and owner of the content's
pod, or the platform moderators for content outside pods. A moderator then restores it or
removes it, which closes every pending report on it.

Posts, comments and resources can be reported (the spec's reports); each kind plugs in
through a `ContentHandler`, and other code may reuse `hide_content` / `restore_content` /
`remove_content` on them. Session messages are not reported here: moderation screens them
before they are delivered (moderation/service.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..accounts.verification import EmailGate
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra import validation
from ..infra.dbtypes import Conn, Executor
from ..notifications.effects import AfterCommit, Units
from ..notifications.service import NewNotification
from ..pods import db as pods_db
from ..pods.service import is_moderator, roles_at_least
from ..resources import db as resources_db
from .db import comments as comments_db
from .db import posts as posts_db
from .db import reports as reports_db

# Content is hidden when its pending reports weigh this much together (three reports of
# established, verified users; see reporter_weight).
REPORT_THRESHOLD = 3.0
REASONS = ("spam", "harassment", "hate", "violence", "misinformation", "inappropriate", "other")
CONTENT_TYPES = ("post", "comment", "resource")
MAX_NOTIFIED_PLATFORM_MODERATORS = 50

State = Literal["live", "hidden", "removed"]


@dataclass(frozen=True, slots=True)
class ContentRef:
    """What moderation needs to know about one piece of content."""

    content_type: str
    content_id: uuid.UUID
    author_id: uuid.UUID | None
    pod_id: uuid.UUID | None
    status: str
    live: bool
    hidden: bool
    excerpt: str
    extra: dict[str, str] = field(default_factory=dict)


class ContentHandler(Protocol):
    content_type: str

    async def lock(self, conn: Conn, content_id: uuid.UUID) -> ContentRef | None:
        """The content, row-locked (so concurrent reports count exactly), or None."""

    async def can_view(self, db: Executor, viewer: Principal, content_id: uuid.UUID) -> bool: ...

    async def set_state(self, conn: Conn, content_id: uuid.UUID, state: State) -> None: ...

    async def describe(self, db: Executor, ids: list[uuid.UUID]) -> dict[uuid.UUID, ContentRef]: ...


def _excerpt(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= 200 else text[:199] + "…"


class _TableContent:
    """A content kind stored in one table with a status column; its db module provides
    lock / set_status / describe_many. Subclasses say which columns hold the author and the
    text, and who may view it."""

    content_type: str
    _db: Any  # the db module (posts_db, comments_db, resources_db)
    _live: str  # the status of visible content ("published", "active")
    _author: str = "author_id"
    _text: str = "content"

    def _extra(self, row: asyncpg.Record) -> dict[str, str]:
        return {}

    def _ref(self, row: asyncpg.Record) -> ContentRef:
        return ContentRef(
            self.content_type,
            row["id"],
            row[self._author],
            row["pod_id"],
            row["status"],
            row["status"] == self._live,
            row["status"] == "hidden",
            _excerpt(row[self._text]),
            self._extra(row),
        )

    async def lock(self, conn: Conn, content_id: uuid.UUID) -> ContentRef | None:
        row = await self._db.lock(conn, content_id)
        return None if row is None else self._ref(row)

    async def set_state(self, conn: Conn, content_id: uuid.UUID, state: State) -> None:
        status = self._live if state == "live" else state
        await self._db.set_status(conn, content_id, status)

    async def describe(self, db: Executor, ids: list[uuid.UUID]) -> dict[uuid.UUID, ContentRef]:
        return {r["id"]: self._ref(r) for r in await self._db.describe_many(db, ids)}


class PostContent(_TableContent):
    content_type = "post"
    _db = posts_db
    _live = "published"

    async def can_view(self, db: Executor, viewer: Principal, content_id: uuid.UUID) -> bool:
        visible: bool = await posts_db.is_visible(db, viewer.user_id, content_id)
        return visible


class CommentContent(_TableContent):
    content_type = "comment"
    _db = comments_db
    _live = "published"

    def _extra(self, row: asyncpg.Record) -> dict[str, str]:
        return {"postId": str(row["post_id"])}

    async def can_view(self, db: Executor, viewer: Principal, content_id: uuid.UUID) -> bool:
        row = await comments_db.describe_many(db, [content_id])
        if not row or row[0]["status"] != "published":
            return False
        visible: bool = await posts_db.is_visible(db, viewer.user_id, row[0]["post_id"])
        return visible


class ResourceContent(_TableContent):
    content_type = "resource"
    _db = resources_db
    _live = "active"
    _author = "owner_id"
    _text = "title"

    async def can_view(self, db: Executor, viewer: Principal, content_id: uuid.UUID) -> bool:
        visible: bool = await resources_db.is_visible(db, viewer.user_id, content_id)
        return visible


# --------------------------------------------------------------------------- API shapes


class ReportRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    content_type: str
    content_id: uuid.UUID
    reason: str = "other"
    description: str | None = None


class ResolveRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    action: Literal["restore", "remove"]


class ReportQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    status: Literal["pending", "resolved"] = "pending"
    content_type: str | None = None
    pod_id: uuid.UUID | None = None
    limit: int = 20
    cursor: str | None = None


class ReportResult(msgspec.Struct, rename="camel"):
    report_id: uuid.UUID | None
    content_type: str
    content_id: uuid.UUID
    already_reported: bool
    pending_reports: int
    content_hidden: bool


class Reporter(msgspec.Struct, rename="camel"):
    id: uuid.UUID | None
    username: str | None


class ContentSnapshot(msgspec.Struct, rename="camel", omit_defaults=True):
    type: str
    id: uuid.UUID
    status: str
    excerpt: str
    author_id: uuid.UUID | None
    pod_id: uuid.UUID | None
    post_id: str | None = None


class Report(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    content_type: str
    content_id: uuid.UUID
    pod_id: uuid.UUID | None
    reason: str
    description: str | None
    status: str
    resolution: str | None
    reporter: Reporter
    reviewed_by: uuid.UUID | None
    reviewed_at: dt.datetime | None
    created_at: dt.datetime
    pending_reports: int
    content: ContentSnapshot | None


class ReportPage(msgspec.Struct, rename="camel"):
    reports: list[Report]
    next_cursor: str | None


class Resolution(msgspec.Struct, rename="camel"):
    report_id: uuid.UUID
    content_type: str
    content_id: uuid.UUID
    action: str
    content_status: str | None
    resolved_reports: int


def _snapshot(ref: ContentRef | None) -> ContentSnapshot | None:
    if ref is None:
        return None
    return ContentSnapshot(
        type=ref.content_type,
        id=ref.content_id,
        status=ref.status,
        excerpt=ref.excerpt,
        author_id=ref.author_id,
        pod_id=ref.pod_id,
        post_id=ref.extra.get("postId"),
    )


def reporter_weight(standing: Any) -> float:
    """How much one report counts toward hiding content, from the reporter's standing, so that
    accounts made to hide something cannot do it alone:

    * platform moderators and admins: 3 (a report of theirs hides at once);
    * accounts younger than a day: 0 (their reports reach the moderators, nothing more);
    * younger than a week: 0.1; older: 0.75;
    * a verified email: +0.25;
    * each past report moderators upheld (removed the content): +0.25, up to +1;
      each they rejected (restored it): -0.25;
    * never below 0 nor above 2.
    """
    if standing is None:
        return 0.0
    if standing["role"] in ("moderator", "admin"):
        return REPORT_THRESHOLD
    age = float(standing["age_days"])
    if age < 1:
        return 0.0
    weight = 0.1 if age < 7 else 0.75
    if standing["verified"]:
        weight += 0.25
    weight += min(1.0, 0.25 * int(standing["upheld"])) - 0.25 * int(standing["rejected"])
    return round(max(0.0, min(2.0, weight)), 3)


class ReportService:
    def __init__(self, units: Units, gate: EmailGate | None = None) -> None:
        self.units = units
        self.db = units.db
        self._handlers: dict[str, ContentHandler] = {}
        self.gate = gate or EmailGate()

    def register(self, handler: ContentHandler) -> None:
        if handler.content_type not in CONTENT_TYPES:
            raise ValueError(f"{handler.content_type!r} is not a reportable content type")
        self._handlers[handler.content_type] = handler

    def _handler(self, content_type: str, field: str = "contentType") -> ContentHandler:
        validation.one_of(content_type, field, CONTENT_TYPES)
        handler = self._handlers.get(content_type)
        if handler is None:
            raise Invalid(field, f"{content_type}s cannot be reported here")
        return handler

    # --- reporting -----------------------------------------------------------------------

    async def report(self, principal: Principal, body: ReportRequest) -> ReportResult:
        async with self.units.begin() as (conn, effects):
            return await self.report_in(
                conn,
                effects,
                principal,
                body.content_type,
                body.content_id,
                reason=body.reason,
                description=body.description,
            )

    async def report_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        content_type: str,
        content_id: uuid.UUID,
        *,
        reason: str | None,
        description: str | None,
    ) -> ReportResult:
        self.gate.check(principal, "report")
        handler = self._handler(content_type)
        reason = validation.one_of(reason or "other", "reason", REASONS)
        if description is not None:
            validation.no_control_characters(description, "description")
            description = description.strip()[:2000] or None
        ref = await handler.lock(conn, content_id)
        if ref is None or not await handler.can_view(conn, principal, content_id):
            raise NotFound(f"{content_type} not found")
        if ref.author_id == principal.user_id:
            raise Conflict(f"you cannot report your own {content_type}", code="own_content")
        weight = reporter_weight(await reports_db.reporter_standing(conn, principal.user_id))
        report_id = await reports_db.insert(
            conn,
            weight=weight,
            reporter_id=principal.user_id,
            content_type=content_type,
            content_id=content_id,
            pod_id=ref.pod_id,
            reason=reason,
            description=description,
        )
        pending, pending_weight = await reports_db.pending_count(conn, content_type, content_id)
        hidden = False
        # (a small tolerance: weights are REAL, and 3 x 1.0 must reach 3.0)
        if report_id is not None and pending_weight >= REPORT_THRESHOLD - 1e-6 and ref.live:
            await self._set(conn, effects, handler, ref, "hidden")
            await self._notify_moderators(conn, effects, ref, pending)
            hidden = True
        return ReportResult(
            report_id=report_id,
            content_type=content_type,
            content_id=content_id,
            already_reported=report_id is None,
            pending_reports=pending,
            content_hidden=hidden,
        )

    async def _set(
        self,
        conn: Conn,
        effects: AfterCommit,
        handler: ContentHandler,
        ref: ContentRef,
        state: State,
    ) -> None:
        await handler.set_state(conn, ref.content_id, state)
        if ref.pod_id is not None:
            kind = {
                "live": "content_restored",
                "hidden": "content_hidden",
                "removed": "content_removed",
            }
            effects.event(
                f"pod:{ref.pod_id}",
                kind[state],
                {"contentType": ref.content_type, "contentId": str(ref.content_id), **ref.extra},
            )

    async def _moderator_ids(self, conn: Conn, ref: ContentRef) -> list[uuid.UUID]:
        if ref.pod_id is not None:
            return await pods_db.active_member_ids(conn, ref.pod_id, roles_at_least("moderator"))
        return await reports_db.platform_moderator_ids(conn, MAX_NOTIFIED_PLATFORM_MODERATORS)

    async def _notify_moderators(
        self, conn: Conn, effects: AfterCommit, ref: ContentRef, pending: int
    ) -> None:
        for moderator in await self._moderator_ids(conn, ref):
            if moderator == ref.author_id:
                continue
            effects.push(
                await self.units.notifications.store(
                    conn,
                    NewNotification(
                        recipient_id=moderator,
                        notification_type="content_report",
                        title=f"A {ref.content_type} was hidden after {pending} reports",
                        message=ref.excerpt,
                        action_url="/moderation/reports",
                        metadata={
                            "contentType": ref.content_type,
                            "contentId": str(ref.content_id),
                            "podId": str(ref.pod_id) if ref.pod_id else None,
                            "pendingReports": pending,
                            **ref.extra,
                        },
                        priority="high",
                    ),
                )
            )

    # --- reusable moderation actions (also for AI moderation of held content) --------------

    async def hide_content(
        self, conn: Conn, effects: AfterCommit, content_type: str, content_id: uuid.UUID
    ) -> bool:
        """Hide live content pending review; False if it is missing or not live."""
        handler = self._handler(content_type)
        ref = await handler.lock(conn, content_id)
        if ref is None or not ref.live:
            return False
        await self._set(conn, effects, handler, ref, "hidden")
        return True

    async def restore_content(
        self, conn: Conn, effects: AfterCommit, content_type: str, content_id: uuid.UUID
    ) -> bool:
        """Make hidden content live again; False if it was not hidden."""
        handler = self._handler(content_type)
        ref = await handler.lock(conn, content_id)
        if ref is None or not ref.hidden:
            return False
        await self._set(conn, effects, handler, ref, "live")
        return True

    async def remove_content(
        self,
        conn: Conn,
        effects: AfterCommit,
        content_type: str,
        content_id: uuid.UUID,
        *,
        by: uuid.UUID | None,
    ) -> bool:
        """Remove live or hidden content for good and tell its author; False if already gone."""
        handler = self._handler(content_type)
        ref = await handler.lock(conn, content_id)
        if ref is None or not (ref.live or ref.hidden):
            return False
        await self._set(conn, effects, handler, ref, "removed")
        if ref.author_id is not None and ref.author_id != by:
            effects.push(
                await self.units.notifications.store(
                    conn,
                    NewNotification(
                        recipient_id=ref.author_id,
                        notification_type="content_removed",
                        title=f"Your {ref.content_type} was removed by a moderator",
                        message=ref.excerpt,
                        metadata={
                            "contentType": ref.content_type,
                            "contentId": str(ref.content_id),
                            **ref.extra,
                        },
                    ),
                )
            )
        return True

    # --- the moderators' queue -------------------------------------------------------------

    async def _is_moderator_of(
        self, conn: Conn, principal: Principal, pod_id: uuid.UUID | None
    ) -> bool:
        role: str | None = None
        if pod_id is not None:
            row = await pods_db.get_membership(conn, pod_id, principal.user_id)
            role = row["role"] if row is not None and row["status"] == "active" else None
        return is_moderator(principal, role)

    async def list(self, principal: Principal, query: ReportQuery) -> ReportPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        if query.content_type is not None:
            validation.one_of(query.content_type, "contentType", CONTENT_TYPES)
        pod_ids: list[uuid.UUID] | None
        if principal.is_platform_moderator:
            pod_ids = [query.pod_id] if query.pod_id else None
        else:
            mine = await reports_db.moderated_pod_ids(
                self.db.pool, principal.user_id, roles_at_least("moderator")
            )
            if not mine:
                raise Forbidden("only moderators see reports", code="not_a_moderator")
            if query.pod_id is not None and query.pod_id not in mine:
                raise Forbidden("you do not moderate this pod", code="not_a_moderator")
            pod_ids = [query.pod_id] if query.pod_id else mine
        listing = f"reports:{query.status}"
        after = (
            cursors.decode(query.cursor, listing, (dt.datetime, uuid.UUID))
            if query.cursor
            else None
        )
        rows = await reports_db.page(
            self.db.pool,
            pod_ids=pod_ids,
            status=query.status,
            content_type=query.content_type,
            after=(after[0], after[1]) if after else None,
            limit=query.limit + 1,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        refs: dict[uuid.UUID, ContentRef] = {}
        by_type: dict[str, list[uuid.UUID]] = {}
        for r in rows:
            by_type.setdefault(r["content_type"], []).append(r["content_id"])
        for content_type, ids in by_type.items():
            handler = self._handlers.get(content_type)
            if handler is not None:
                refs.update(await handler.describe(self.db.pool, ids))
        reports = [
            Report(
                id=r["id"],
                content_type=r["content_type"],
                content_id=r["content_id"],
                pod_id=r["pod_id"],
                reason=r["reason"],
                description=r["description"],
                status=r["status"],
                resolution=r["resolution"],
                reporter=Reporter(r["reporter_id"], r["reporter_username"]),
                reviewed_by=r["reviewed_by"],
                reviewed_at=r["reviewed_at"],
                created_at=r["created_at"],
                pending_reports=int(r["pending_reports"]),
                content=_snapshot(refs.get(r["content_id"])),
            )
            for r in rows
        ]
        next_cursor = (
            cursors.encode(listing, (rows[-1]["created_at"], rows[-1]["id"])) if more else None
        )
        return ReportPage(reports, next_cursor)

    async def resolve(
        self, principal: Principal, report_id: uuid.UUID, body: ResolveRequest
    ) -> Resolution:
        async with self.units.begin() as (conn, effects):
            report = await reports_db.lock(conn, report_id)
            # Reports are private to moderators: to anyone else they do not exist.
            if report is None or not await self._is_moderator_of(conn, principal, report["pod_id"]):
                raise NotFound("report not found")
            if report["status"] != "pending":
                raise Conflict("this report is already resolved", code="already_resolved")
            content_type, content_id = report["content_type"], report["content_id"]
            if body.action == "restore":
                await self.restore_content(conn, effects, content_type, content_id)
            else:
                await self.remove_content(
                    conn, effects, content_type, content_id, by=principal.user_id
                )
            closed = await reports_db.resolve_pending(
                conn,
                content_type,
                content_id,
                reviewer=principal.user_id,
                resolution="restored" if body.action == "restore" else "removed",
            )
            ref = await self._handler(content_type).lock(conn, content_id)
        return Resolution(
            report_id=report_id,
            content_type=content_type,
            content_id=content_id,
            action=body.action,
            content_status=ref.status if ref else None,
            resolved_reports=closed,
        )


# the application's key for what this module provides (typed app state)
REPORTS = web.AppKey("reports", ReportService)
