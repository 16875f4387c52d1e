"""Threaded comments on posts, their likes and reports.

Whoever may read a post may read and write its comments. The tree comes back depth-first
(siblings oldest first), paginated by an opaque cursor; each page nests the replies it holds,
and a reply whose parent was on an earlier page starts the page's list with its
`parentCommentId` set. Deleted or held comments keep their place in the tree (so replies keep
their context) but show no content or author to anyone but their author.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Kind
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra import validation
from ..infra.dbtypes import Conn, Executor
from ..moderation.service import ModerationContext, ModerationService
from ..notifications.effects import AfterCommit, Units
from ..notifications.service import NewNotification
from ..pods.service import is_moderator
from .db import comments as comments_db
from .db import posts as posts_db
from .feed import (
    AcceptAnswer,
    AcceptedAnswer,
    AuthorBrief,
    author_brief,
    record_like,
    room_of,
)
from .reports import ReportResult, ReportService

MAX_CONTENT = 5000
MAX_DEPTH = 15
_PATH = re.compile(r"^(?:[0-9]{20}[0-9a-f]{32}/){1,16}$")


class Comment(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    post_id: uuid.UUID
    parent_comment_id: uuid.UUID | None
    author: AuthorBrief | None
    is_anonymous: bool
    is_mine: bool
    content: str | None
    status: str
    depth: int
    like_count: int
    liked: bool
    reply_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    replies: list[Comment] = []


class CommentPage(msgspec.Struct, rename="camel"):
    post_id: uuid.UUID
    comments: list[Comment]
    next_cursor: str | None


class CommentQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 50
    cursor: str | None = None
    parent_comment_id: uuid.UUID | None = None


class CommentCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    content: str
    parent_comment_id: uuid.UUID | None = None
    is_anonymous: bool = False


class CommentInteractionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: Literal["like", "report"]
    active: bool | None = None
    reason: str | None = None
    description: str | None = None


class CommentInteractionResult(msgspec.Struct, rename="camel"):
    comment_id: uuid.UUID
    post_id: uuid.UUID
    type: str
    active: bool
    changed: bool
    like_count: int
    report: ReportResult | None = None


def render(row: asyncpg.Record, viewer: Principal | None, pod_role: str | None) -> Comment:
    """A comment as `viewer` sees it (None: as broadcast to the post's pod room)."""
    mine = viewer is not None and row["author_id"] == viewer.user_id
    readable = row["status"] == "published" or mine
    reveal = readable and (
        not row["is_anonymous"] or mine or (viewer is not None and is_moderator(viewer, pod_role))
    )
    return Comment(
        id=row["id"],
        post_id=row["post_id"],
        parent_comment_id=row["parent_comment_id"],
        author=author_brief(row) if reveal else None,
        is_anonymous=row["is_anonymous"],
        is_mine=mine,
        content=row["content"] if readable else None,
        status=row["status"],
        depth=row["depth"],
        like_count=row["like_count"],
        liked=viewer is not None and row["liked"],
        reply_count=int(row["reply_count"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class CommentService:
    def __init__(
        self, units: Units, reports: ReportService, moderation: ModerationService | None = None
    ) -> None:
        self.units = units
        self.db = units.db
        self.reports = reports
        self.moderation = moderation

    async def _post(
        self, db: Executor | None, principal: Principal, post_id: uuid.UUID
    ) -> asyncpg.Record:
        row = await posts_db.get_visible(db or self.db.pool, principal.user_id, post_id)
        if row is None:
            raise NotFound("post not found")
        return row

    async def list(
        self, principal: Principal, post_id: uuid.UUID, query: CommentQuery
    ) -> CommentPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        post = await self._post(None, principal, post_id)
        subtree: str | None = None
        if query.parent_comment_id is not None:
            parent = await comments_db.get(self.db.pool, principal.user_id, query.parent_comment_id)
            if parent is None or parent["post_id"] != post_id:
                raise NotFound("comment not found")
            subtree = parent["thread_path"]
        listing = f"comments:{post_id}:{query.parent_comment_id or ''}"
        after: str | None = None
        if query.cursor:
            (after,) = cursors.decode(query.cursor, listing, (str,))
            if not _PATH.match(after):
                raise Invalid("cursor", "is not a valid cursor")
        rows = await comments_db.thread_page(
            self.db.pool,
            principal.user_id,
            post_id,
            subtree_of=subtree,
            after=after,
            limit=query.limit + 1,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        nodes: dict[uuid.UUID, Comment] = {}
        top: list[Comment] = []
        for row in rows:  # depth-first: a parent on this page always comes before its replies
            node = render(row, principal, post["my_pod_role"])
            parent_node = nodes.get(row["parent_comment_id"]) if row["parent_comment_id"] else None
            (parent_node.replies if parent_node is not None else top).append(node)
            nodes[row["id"]] = node
        next_cursor = cursors.encode(listing, (rows[-1]["thread_path"],)) if more else None
        return CommentPage(post_id, top, next_cursor)

    async def create(
        self, principal: Principal, post_id: uuid.UUID, body: CommentCreate
    ) -> Comment:
        await self.screen_new(principal, post_id, body)
        async with self.units.begin() as (conn, effects):
            row, post = await self.create_in(conn, effects, principal, post_id, body, screened=True)
        return render(row, principal, post["my_pod_role"])

    async def _check_new(
        self, db: Executor, principal: Principal, post_id: uuid.UUID, body: CommentCreate
    ) -> tuple[str, asyncpg.Record]:
        """Validate a new comment and check its post takes it: (content, post)."""
        content = validation.text(body.content, "content", max_len=MAX_CONTENT)
        post = await self._post(db, principal, post_id)
        if post["status"] != "published":
            raise Conflict("this post is held for review", code="post_hidden")
        return content, post

    @staticmethod
    def _check_parent(parent: asyncpg.Record | None, post_id: uuid.UUID) -> None:
        if parent is None or parent["post_id"] != post_id:
            raise Invalid("parentCommentId", "is not a comment on this post")
        if parent["status"] != "published":
            raise Conflict("that comment no longer takes replies", code="parent_unavailable")
        if parent["depth"] + 1 > MAX_DEPTH:
            raise Invalid("parentCommentId", f"replies nest at most {MAX_DEPTH} levels deep")

    async def screen_new(
        self,
        principal: Principal,
        post_id: uuid.UUID,
        body: CommentCreate,
        *,
        dedupe_key: str | None = None,
    ) -> None:
        """Check a new comment, then pass it through moderation: raises HeldForReview (422)
        when it is held. Call before the transaction that stores it opens (see
        `PostService.screen_new`)."""
        content, post = await self._check_new(self.db.pool, principal, post_id, body)
        if body.parent_comment_id is not None:
            parent = await comments_db.get(self.db.pool, principal.user_id, body.parent_comment_id)
            self._check_parent(parent, post_id)
        if self.moderation is not None:
            snapshot = {**msgspec.to_builtins(body), "postId": str(post_id)}
            await self.moderation.screen(
                principal,
                "comment",
                content,
                snapshot,
                ModerationContext(pod_id=post["pod_id"]),
                dedupe_key=dedupe_key,
            )

    async def create_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        post_id: uuid.UUID,
        body: CommentCreate,
        *,
        screened: bool = False,
    ) -> tuple[asyncpg.Record, asyncpg.Record]:
        """Create a comment in the caller's transaction: (comment, post). `screened`: it passed
        `screen_new` before the transaction opened, or a moderator approved it."""
        if not screened and self.moderation is not None:
            raise RuntimeError("screen a new comment (screen_new) before its transaction opens")
        content, post = await self._check_new(conn, principal, post_id, body)
        parent: asyncpg.Record | None = None
        if body.parent_comment_id is not None:
            parent = await comments_db.lock(conn, body.parent_comment_id)
            self._check_parent(parent, post_id)
        comment_id = await comments_db.insert_comment(
            conn,
            post_id=post_id,
            author_id=principal.user_id,
            parent=parent,
            content=content,
            is_anonymous=body.is_anonymous,
        )
        row = await comments_db.get(conn, principal.user_id, comment_id)
        if row is None:
            raise RuntimeError("the statement returned no row")
        counts = await posts_db.counts(conn, post_id)
        await self._record_comment(conn, effects, principal, post, comment_id)
        room = room_of(post["pod_id"], post["visibility"])
        if room is not None:
            effects.event(
                room,
                "comment_created",
                {
                    "postId": str(post_id),
                    "comment": msgspec.to_builtins(render(row, None, None)),
                    "commentCount": counts["comment_count"],
                },
            )
        await self._notify(conn, effects, principal, post, parent, row, body.is_anonymous)
        return row, post

    async def _record_comment(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        post: asyncpg.Record,
        comment_id: uuid.UUID,
    ) -> None:
        """The comment made, and received by the post's author (unless it is theirs)."""
        at = dt.datetime.now(dt.UTC)
        meta = {"postId": str(post["id"]), "commentId": str(comment_id)}
        analytics = self.units.analytics
        await analytics.record(
            conn,
            principal.user_id,
            Kind.COMMENT_CREATED,
            occurred_at=at,
            pod_id=post["pod_id"],
            meta=meta,
            dedupe_key=str(comment_id),
            after=effects,
        )
        if post["author_id"] is not None and post["author_id"] != principal.user_id:
            await analytics.record(
                conn,
                post["author_id"],
                Kind.COMMENT_RECEIVED,
                occurred_at=at,
                pod_id=post["pod_id"],
                meta={**meta, "fromUserId": str(principal.user_id)},
                dedupe_key=str(comment_id),
                after=effects,
            )

    async def publish_approved(self, author: Principal, snapshot: dict[str, Any]) -> uuid.UUID:
        """Store a comment that was held for review and then approved by a moderator."""
        post_id = uuid.UUID(snapshot["postId"])
        body = msgspec.convert({k: v for k, v in snapshot.items() if k != "postId"}, CommentCreate)
        async with self.units.begin() as (conn, effects):
            row, _ = await self.create_in(conn, effects, author, post_id, body, screened=True)
        comment_id: uuid.UUID = row["id"]
        return comment_id

    async def _notify(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        post: asyncpg.Record,
        parent: asyncpg.Record | None,
        comment: asyncpg.Record,
        anonymous: bool,
    ) -> None:
        who = "Someone" if anonymous else principal.username
        metadata = {
            "postId": str(post["id"]),
            "commentId": str(comment["id"]),
            "podId": str(post["pod_id"]) if post["pod_id"] else None,
        }
        recipients: list[tuple[uuid.UUID, str, str]] = []
        if post["author_id"] is not None and post["author_id"] != principal.user_id:
            recipients.append((post["author_id"], "comment", f"{who} commented on your post"))
        if parent is not None and parent["author_id"] not in (
            None,
            principal.user_id,
            post["author_id"],
        ):
            recipients.append((parent["author_id"], "comment_reply", f"{who} replied to you"))
        for recipient, kind, title in recipients:
            effects.push(
                await self.units.notifications.store(
                    conn,
                    NewNotification(
                        recipient_id=recipient,
                        notification_type=kind,
                        title=title,
                        message=comment["content"][:140],
                        action_url=f"/posts/{post['id']}#comment-{comment['id']}",
                        metadata=metadata,
                        sender_id=None if anonymous else principal.user_id,
                    ),
                )
            )

    async def accept_answer(
        self, principal: Principal, post_id: uuid.UUID, body: AcceptAnswer
    ) -> AcceptedAnswer:
        """The author of a question accepts a comment on it as its answer (another one later
        replaces it). The answer's author is credited once per answer."""
        async with self.units.begin() as (conn, effects):
            post = await self._post(conn, principal, post_id)
            if post["author_id"] != principal.user_id:
                raise Forbidden("only the question's author accepts an answer", code="not_author")
            if post["post_type"] != "question":
                raise Conflict("only questions have an accepted answer", code="not_a_question")
            await posts_db.lock(conn, post_id)
            comment = await comments_db.lock(conn, body.comment_id)
            if comment is None or comment["post_id"] != post_id or comment["status"] != "published":
                raise Invalid("commentId", "is not a published comment on this question")
            if comment["author_id"] == principal.user_id:
                raise Invalid("commentId", "is your own comment: accept someone else's answer")
            changed = await posts_db.set_accepted_answer(conn, post_id, body.comment_id)
            if comment["author_id"] is not None:
                await self.units.analytics.record(
                    conn,
                    comment["author_id"],
                    Kind.ANSWER_ACCEPTED,
                    occurred_at=dt.datetime.now(dt.UTC),
                    pod_id=post["pod_id"],
                    meta={
                        "postId": str(post_id),
                        "commentId": str(body.comment_id),
                        "acceptedBy": str(principal.user_id),
                    },
                    dedupe_key=str(body.comment_id),
                    after=effects,
                )
            room = room_of(post["pod_id"], post["visibility"])
            if changed and room is not None:
                effects.event(
                    room,
                    "answer_accepted",
                    {"postId": str(post_id), "commentId": str(body.comment_id)},
                )
        return AcceptedAnswer(post_id=post_id, comment_id=body.comment_id, changed=changed)

    async def interact(
        self, principal: Principal, comment_id: uuid.UUID, body: CommentInteractionRequest
    ) -> CommentInteractionResult:
        async with self.units.begin() as (conn, effects):
            return await self.interact_in(
                conn,
                effects,
                principal,
                comment_id,
                body.type,
                active=body.active,
                reason=body.reason,
                description=body.description,
            )

    async def interact_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        comment_id: uuid.UUID,
        kind: str,
        *,
        active: bool | None = None,
        reason: str | None = None,
        description: str | None = None,
    ) -> CommentInteractionResult:
        validation.one_of(kind, "type", ("like", "report"))
        me = principal.user_id
        row = await comments_db.get(conn, me, comment_id)
        if row is None:
            raise NotFound("comment not found")
        post = await posts_db.get_visible(conn, me, row["post_id"])
        if post is None:
            raise NotFound("comment not found")
        report: ReportResult | None = None
        if kind == "report":
            if active is False:
                raise Invalid("active", "a report cannot be withdrawn")
            report = await self.reports.report_in(
                conn,
                effects,
                principal,
                "comment",
                comment_id,
                reason=reason,
                description=description,
            )
            return CommentInteractionResult(
                comment_id=comment_id,
                post_id=row["post_id"],
                type=kind,
                active=True,
                changed=not report.already_reported,
                like_count=row["like_count"],
                report=report,
            )
        if row["status"] != "published":
            raise Conflict("this comment is not available", code="comment_unavailable")
        if active is None:
            active = not await comments_db.has_like(conn, comment_id, me)
        if active:
            changed = await comments_db.add_like(conn, comment_id, me)
        else:
            changed = await comments_db.remove_like(conn, comment_id, me)
        likes = await comments_db.like_count(conn, comment_id)
        if changed and active:
            await record_like(
                self.units.analytics,
                conn,
                effects,
                me,
                row["author_id"],
                "comment",
                comment_id,
                post["pod_id"],
            )
        room = room_of(post["pod_id"], post["visibility"])
        if changed and room is not None:
            effects.event(
                room,
                "comment_like_count",
                {"postId": str(row["post_id"]), "commentId": str(comment_id), "likeCount": likes},
            )
        return CommentInteractionResult(
            comment_id=comment_id,
            post_id=row["post_id"],
            type=kind,
            active=active,
            changed=changed,
            like_count=likes,
        )

    async def delete(self, principal: Principal, comment_id: uuid.UUID) -> None:
        async with self.units.begin() as (conn, effects):
            row = await comments_db.lock(conn, comment_id)
            if row is None:
                raise NotFound("comment not found")
            post = await posts_db.get_visible(conn, principal.user_id, row["post_id"])
            if post is None or row["status"] not in ("published", "hidden"):
                raise NotFound("comment not found")
            if row["author_id"] != principal.user_id and not is_moderator(
                principal, post["my_pod_role"]
            ):
                raise Forbidden(
                    "only the author or a moderator can delete a comment",
                    code="insufficient_role",
                )
            await comments_db.set_status(conn, comment_id, "deleted")
            counts = await posts_db.counts(conn, row["post_id"])
            room = room_of(post["pod_id"], post["visibility"])
            if room is not None:
                effects.event(
                    room,
                    "comment_deleted",
                    {
                        "postId": str(row["post_id"]),
                        "commentId": str(comment_id),
                        "commentCount": counts["comment_count"],
                    },
                )


# the application's key for what this module provides (typed app state)
COMMENTS = web.AppKey("comments", CommentService)
