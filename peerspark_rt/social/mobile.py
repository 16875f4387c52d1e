"""Mobile endpoints: a compact feed and offline sync (spec: Mobile API Considerations).

Sync applies the client's pending actions in order, each in its own transaction together with
a record of its client id and result (`sync_actions`). A retried sync finds the record and
answers with the stored result instead of applying the action again; two syncs racing with the
same action serialize on the record's key. Each action gets its own result: a bad or unknown
action is an error for that action only. Rate-limit and availability errors are not recorded,
so the action can be retried.

An action runs in two steps: `prepare` (parse, check, moderation) before its transaction opens,
then the returned `apply` inside it. Moderation must not run inside a transaction: it may call
an external API, and it stores held content on a connection of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import AppError, Invalid, RateLimited, Unavailable
from ..infra import validation
from ..infra.dbtypes import Conn
from ..notifications.effects import AfterCommit, Units
from ..resources import db as resources_db
from ..resources.service import RateRequest, Resource, ResourceService
from .comments import CommentCreate, CommentService
from .db import posts as posts_db
from .db import sync as sync_db
from .feed import FeedQuery, Post, PostCreate, PostService, PostUpdate

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ACTIONS = 100
MAX_UPDATES = 100
SYNC_RECORD_DAYS = 30
CLOCK_SKEW = dt.timedelta(minutes=5)


# --------------------------------------------------------------------------- compact feed


class MobileAuthor(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    name: str
    username: str
    avatar: str | None
    verified: bool


class MobileStats(msgspec.Struct):
    likes: int
    comments: int


class MobileInteractions(msgspec.Struct):
    liked: bool
    bookmarked: bool


class MobilePost(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    content: str
    type: str
    created_at: dt.datetime
    updated_at: dt.datetime
    author: MobileAuthor | None
    pod: str | None
    pod_id: uuid.UUID | None
    stats: MobileStats
    user_interactions: MobileInteractions
    media: list[str]
    tags: list[str]


class MobileFeed(msgspec.Struct, rename="camel"):
    posts: list[MobilePost]
    next_cursor: str | None


class MobileFeedQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 10
    cursor: str | None = None


def compact(post: Post) -> MobilePost:
    author = None
    if post.author is not None:
        a = post.author
        author = MobileAuthor(
            a.id, f"{a.first_name} {a.last_name}".strip(), a.username, a.avatar_url, a.is_verified
        )
    media = list(post.media_urls) + [m.url for m in post.attachments if m.url]
    return MobilePost(
        id=post.id,
        content=post.content,
        type=post.post_type,
        created_at=post.created_at,
        updated_at=post.updated_at,
        author=author,
        pod=post.pod_name,
        pod_id=post.pod_id,
        stats=MobileStats(post.like_count, post.comment_count),
        user_interactions=MobileInteractions(post.liked, post.bookmarked),
        media=media,
        tags=post.tags,
    )


# --------------------------------------------------------------------------- sync shapes


class PendingAction(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    # each action's data is checked as it is applied, so one bad action fails alone
    __checked_later__: ClassVar[tuple[str, ...]] = ("data",)

    client_action_id: str
    type: str
    data: dict[str, Any] = {}


class SyncRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    last_sync_timestamp: dt.datetime | None = None
    pending_actions: list[PendingAction] = []


class ActionResult(msgspec.Struct, rename="camel"):
    client_action_id: str
    type: str
    status: str  # "ok" | "error"
    replayed: bool
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class NotificationItem(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    type: str
    title: str
    message: str | None
    action_url: str | None
    metadata: dict[str, Any] | None
    is_read: bool
    created_at: dt.datetime


class SyncUpdates(msgspec.Struct, rename="camel"):
    posts: list[MobilePost]
    deleted_post_ids: list[uuid.UUID]
    resources: list[Resource]
    notifications: list[NotificationItem]
    has_more: bool
    full_sync_required: bool


class SyncResponse(msgspec.Struct, rename="camel"):
    sync_results: list[ActionResult]
    updates: SyncUpdates
    sync_timestamp: dt.datetime


# Action payloads.
class _PostRef(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    post_id: uuid.UUID


class _PostToggle(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    post_id: uuid.UUID
    active: bool | None = None


class _PostEdit(PostUpdate, forbid_unknown_fields=True):
    post_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET


class _NewComment(CommentCreate, forbid_unknown_fields=True):
    post_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET


class _CommentToggle(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    comment_id: uuid.UUID
    active: bool | None = None


class _ResourceToggle(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    resource_id: uuid.UUID
    active: bool | None = None


class _Rating(RateRequest, forbid_unknown_fields=True):
    resource_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET


def _payload(data: dict[str, Any], type_: type[T]) -> T:
    """Convert an action's data, naming the bad field as `data.<field>`."""
    return validation.convert(data, type_, within="data")


def resume_point(streams: list[list[dt.datetime]], limit: int) -> tuple[dt.datetime | None, bool]:
    """Where the next sync continues when a stream of changes is cut at `limit` rows.

    `streams` holds each stream's change times as read, oldest first, up to `limit + 1` deep.
    Returns (time, stuck): the latest time up to which every cut stream was sent in full, so
    that asking for changes strictly after it misses nothing (None when no stream was cut);
    `stuck` when a cut stream sent nothing older than the first row it left out (more than
    `limit` changes at one instant): no time resumes it, the client must sync in full."""
    cut_at: list[dt.datetime] = []
    stuck = False
    for times in streams:
        if len(times) <= limit:
            continue
        first_left_out = times[limit]
        sent_in_full = [t for t in times[:limit] if t < first_left_out]
        if sent_in_full:
            cut_at.append(sent_in_full[-1])
        else:
            stuck = True
    return (min(cut_at) if cut_at else None), stuck


def _storable(value: Any) -> Any:
    """`value` with NUL characters replaced: an error may quote what the client sent (an
    unknown field's name), and PostgreSQL's JSONB cannot hold NUL."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _data_error(exc: asyncpg.DataError) -> Invalid:
    log.warning("sync action refused by the database: %s", exc)
    return Invalid("data", validation.OUT_OF_RANGE)


def _required(value: uuid.UUID | msgspec.UnsetType, field: str) -> uuid.UUID:
    if isinstance(value, msgspec.UnsetType):
        raise Invalid(f"data.{field}", "is required")
    return value


# Runs inside the action's transaction; returns the action's result.
Apply = Callable[[Conn, AfterCommit], Awaitable[dict[str, Any]]]
# Parses and checks an action's data (and screens new content) before the transaction opens.
Prepare = Callable[[Principal, str, dict[str, Any]], Awaitable[Apply]]


class MobileService:
    def __init__(
        self,
        units: Units,
        posts: PostService,
        comments: CommentService,
        resources: ResourceService,
    ) -> None:
        self.units = units
        self.db = units.db
        self.posts = posts
        self.comments = comments
        self.resources = resources
        self.handlers: dict[str, Prepare] = {
            "create_post": self._create_post,
            "update_post": self._update_post,
            "delete_post": self._delete_post,
            "like_post": self._like_post,
            "bookmark_post": self._bookmark_post,
            "share_post": self._share_post,
            "create_comment": self._create_comment,
            "like_comment": self._like_comment,
            "bookmark_resource": self._bookmark_resource,
            "rate_resource": self._rate_resource,
        }

    async def feed(self, principal: Principal, query: MobileFeedQuery) -> MobileFeed:
        encoded = await self.posts.feed(
            principal, FeedQuery(type="all", limit=query.limit, cursor=query.cursor)
        )
        page = encoded.decode()
        return MobileFeed([compact(p) for p in page.posts], page.next_cursor)

    # --- sync ----------------------------------------------------------------------------------

    async def sync(self, principal: Principal, body: SyncRequest) -> SyncResponse:
        if len(body.pending_actions) > MAX_ACTIONS:
            raise Invalid("pendingActions", f"at most {MAX_ACTIONS} actions per sync")
        for i, action in enumerate(body.pending_actions):
            field = f"pendingActions[{i}].clientActionId"
            if not 1 <= len(action.client_action_id) <= 100:
                raise Invalid(field, "must be 1-100 characters")
            validation.no_control_characters(action.client_action_id, field)
        since = body.last_sync_timestamp
        server_now = await sync_db.now(self.db.pool)
        if since is not None:
            if since.tzinfo is None:
                raise Invalid("lastSyncTimestamp", "must include a time zone (e.g. Z)")
            if since > server_now + CLOCK_SKEW:
                raise Invalid("lastSyncTimestamp", "is in the future")
        results = [await self._apply(principal, action) for action in body.pending_actions]
        await sync_db.purge_older_than(
            self.db.pool, principal.user_id, server_now - dt.timedelta(days=SYNC_RECORD_DAYS)
        )
        # Read the clock before reading changes, so nothing committed after this point can be
        # missed by the next sync (it may be sent twice, which clients handle by id).
        stamp = await sync_db.now(self.db.pool)
        updates, resume = await self._updates(principal, since)
        return SyncResponse(results, updates, resume or stamp)

    async def _apply(self, principal: Principal, action: PendingAction) -> ActionResult:
        me, cid = principal.user_id, action.client_action_id
        prepare = self.handlers.get(action.type)
        if prepare is None:
            return ActionResult(
                cid,
                action.type,
                "error",
                False,
                error={
                    "code": "unknown_action",
                    "message": f"unknown action type {action.type!r}; known: "
                    + ", ".join(sorted(self.handlers)),
                },
            )
        # A retry of an action already answered gets that answer, without checking or
        # screening the content again.
        stored = await sync_db.get(self.db.pool, me, cid)
        if stored is not None:
            return self._replayed(cid, action.type, stored)
        apply: Apply | None = None
        failure: AppError | None = None
        try:
            apply = await prepare(principal, cid, action.data)
        except (RateLimited, Unavailable) as exc:
            return ActionResult(cid, action.type, "error", False, error=exc.to_dict())
        except AppError as exc:
            failure = exc  # a final answer (held for review, invalid, not found...): record it
        except asyncpg.DataError as exc:
            failure = _data_error(exc)
        except Exception:
            log.exception("sync action %s (%s) failed", action.type, cid)
            return self._internal_error(cid, action.type)
        async with self.units.begin() as (conn, effects):
            if not await sync_db.claim(conn, me, cid, action.type):
                stored = await sync_db.get(conn, me, cid)
                if stored is None:
                    raise RuntimeError("stored is missing")
                return self._replayed(cid, action.type, stored)
            result: dict[str, Any] = {}
            if apply is not None:
                mark = effects.mark()
                try:
                    async with conn.transaction():  # a savepoint: a failed action leaves no trace
                        result = await apply(conn, effects)
                except (RateLimited, Unavailable) as exc:
                    effects.discard_after(mark)
                    await sync_db.release(conn, me, cid)  # not an answer: let the client retry
                    return ActionResult(cid, action.type, "error", False, error=exc.to_dict())
                except AppError as exc:
                    effects.discard_after(mark)
                    failure = exc
                except asyncpg.DataError as exc:
                    # A value the database refuses would be refused again on every retry: an
                    # answer, like an invalid field, not a failure to try again later.
                    effects.discard_after(mark)
                    failure = _data_error(exc)
                except Exception:
                    log.exception("sync action %s (%s) failed", action.type, cid)
                    effects.discard_after(mark)
                    await sync_db.release(conn, me, cid)
                    return self._internal_error(cid, action.type)
            if failure is not None:
                error = _storable(failure.to_dict())
                await sync_db.record(conn, me, cid, False, {"error": error})
                return ActionResult(cid, action.type, "error", False, error=error)
            await sync_db.record(conn, me, cid, True, result)
        return ActionResult(cid, action.type, "ok", False, result=result)

    def _replayed(self, cid: str, kind: str, stored: Any) -> ActionResult:
        if stored["action_type"] != kind:
            return ActionResult(
                cid,
                kind,
                "error",
                True,
                error={
                    "code": "client_id_reused",
                    "message": "this clientActionId was already used for a "
                    f"{stored['action_type']} action",
                },
            )
        return self._stored(cid, kind, stored["ok"], stored["result"], True)

    @staticmethod
    def _internal_error(cid: str, kind: str) -> ActionResult:
        return ActionResult(
            cid,
            kind,
            "error",
            False,
            error={"code": "internal_error", "message": "the action failed; retry later"},
        )

    @staticmethod
    def _stored(
        cid: str, kind: str, ok: bool, stored: dict[str, Any], replayed: bool
    ) -> ActionResult:
        if ok:
            return ActionResult(cid, kind, "ok", replayed, result=stored)
        return ActionResult(cid, kind, "error", replayed, error=stored.get("error"))

    async def _updates(
        self, principal: Principal, since: dt.datetime | None
    ) -> tuple[SyncUpdates, dt.datetime | None]:
        """The changes since `since`, each stream cut at MAX_UPDATES, and the time the next
        sync must continue from when a stream was cut (None: the clock read before)."""
        if since is None:
            return SyncUpdates([], [], [], [], has_more=False, full_sync_required=True), None
        me, deep = principal.user_id, MAX_UPDATES + 1
        post_rows = await posts_db.changed_since(self.db.pool, me, since, deep)
        gone = await posts_db.gone_since(self.db.pool, me, since, deep)
        resource_rows = await resources_db.changed_since(self.db.pool, me, since, deep)
        notes = await sync_db.notifications_since(self.db.pool, me, since, deep)
        resume, stuck = resume_point(
            [
                [r["updated_at"] for r in post_rows],
                [r["updated_at"] for r in gone],
                [r["updated_at"] for r in resource_rows],
                [n["created_at"] for n in notes],
            ],
            MAX_UPDATES,
        )
        has_more = max(len(post_rows), len(gone), len(resource_rows), len(notes)) > MAX_UPDATES
        posts = [
            compact(p) for p in await self.posts.render_many(post_rows[:MAX_UPDATES], principal)
        ]
        resources = [await self.resources.render(r) for r in resource_rows[:MAX_UPDATES]]
        notifications = [
            NotificationItem(
                id=n["id"],
                type=n["notification_type"],
                title=n["title"],
                message=n["message"],
                action_url=n["action_url"],
                metadata=n["metadata"] or None,
                is_read=n["is_read"],
                created_at=n["created_at"],
            )
            for n in notes[:MAX_UPDATES]
        ]
        updates = SyncUpdates(
            posts,
            [r["id"] for r in gone[:MAX_UPDATES]],
            resources,
            notifications,
            has_more,
            full_sync_required=stuck,
        )
        return updates, None if stuck else resume

    # --- action handlers -------------------------------------------------------------------------
    # Each parses its data and does what must happen before the transaction, and returns what
    # runs inside it. New content is screened by moderation here, with the client action id as
    # the held item's dedupe key (two racing copies of one sync hold it once).

    async def _create_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        body = _payload(data, PostCreate)
        await self.posts.screen_new(principal, body, dedupe_key=f"sync:{cid}")

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            row = await self.posts.create_in(conn, effects, principal, body, screened=True)
            post = await self.posts.render(row, principal)
            return {"postId": str(row["id"]), "post": msgspec.to_builtins(compact(post))}

        return apply

    async def _update_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        edit = _payload(data, _PostEdit)
        post_id = _required(edit.post_id, "postId")
        changes = PostUpdate(**{f: getattr(edit, f) for f in PostUpdate.__struct_fields__})
        await self.posts.screen_edit(principal, post_id, changes, dedupe_key=f"sync:{cid}")

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            row = await self.posts.update_in(
                conn, effects, principal, post_id, changes, screened=True
            )
            post = await self.posts.render(row, principal)
            return {"postId": str(post_id), "post": msgspec.to_builtins(compact(post))}

        return apply

    async def _delete_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        ref = _payload(data, _PostRef)

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            await self.posts.delete_in(conn, effects, principal, ref.post_id)
            return {"postId": str(ref.post_id), "deleted": True}

        return apply

    def _post_interaction(self, principal: Principal, data: dict[str, Any], kind: str) -> Apply:
        ref = _payload(data, _PostToggle)

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            result = await self.posts.interact_in(
                conn, effects, principal, ref.post_id, kind, active=ref.active
            )
            out: dict[str, Any] = msgspec.to_builtins(result)
            out.pop("report", None)
            return out

        return apply

    async def _like_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        return self._post_interaction(principal, data, "like")

    async def _bookmark_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        return self._post_interaction(principal, data, "bookmark")

    async def _share_post(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        return self._post_interaction(principal, data, "share")

    async def _create_comment(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        new = _payload(data, _NewComment)
        post_id = _required(new.post_id, "postId")
        body = CommentCreate(new.content, new.parent_comment_id, new.is_anonymous)
        await self.comments.screen_new(principal, post_id, body, dedupe_key=f"sync:{cid}")

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            row, _ = await self.comments.create_in(
                conn, effects, principal, post_id, body, screened=True
            )
            return {"commentId": str(row["id"]), "postId": str(post_id)}

        return apply

    async def _like_comment(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        ref = _payload(data, _CommentToggle)

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            result = await self.comments.interact_in(
                conn, effects, principal, ref.comment_id, "like", active=ref.active
            )
            out: dict[str, Any] = msgspec.to_builtins(result)
            out.pop("report", None)
            return out

        return apply

    async def _bookmark_resource(
        self, principal: Principal, cid: str, data: dict[str, Any]
    ) -> Apply:
        ref = _payload(data, _ResourceToggle)

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            result = await self.resources.bookmark_in(
                conn, effects, principal, ref.resource_id, ref.active
            )
            out: dict[str, Any] = msgspec.to_builtins(result)
            return out

        return apply

    async def _rate_resource(self, principal: Principal, cid: str, data: dict[str, Any]) -> Apply:
        rating = _payload(data, _Rating)
        resource_id = _required(rating.resource_id, "resourceId")
        request = RateRequest(rating.rating, rating.review)

        async def apply(conn: Conn, effects: AfterCommit) -> dict[str, Any]:
            result = await self.resources.rate_in(conn, effects, principal, resource_id, request)
            out: dict[str, Any] = msgspec.to_builtins(result)
            return out

        return apply


# the application's key for what this module provides (typed app state)
MOBILE = web.AppKey("mobile", MobileService)
