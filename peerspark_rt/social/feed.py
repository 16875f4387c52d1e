"""The social feed: posts, the four feeds, likes, bookmarks, shares and reports of posts.

One piece because the post's one visibility rule, its anonymity and its counters are used by
every operation here; comments, reports and mobile sync live beside it.

Rules:
* Who reads a post: see `db.posts.visible` (the same rule for every read path). Posts in a
  private pod reach only its members, even when marked public. Private posts reach only
  their author.
* An anonymous post hides its author from everyone but the author, the moderators (and up)
  of its pod and platform moderators.
* The author edits a post; the author or a moderator of its pod (or a platform moderator)
  deletes it (soft: status 'deleted'). Pinning, and posting announcements, need moderator+.
* Likes and bookmarks toggle (or take an explicit `active`); two identical requests racing
  each other (a double click) both see the same state and make one change. Counts are kept
  by triggers on the interaction rows, so they always equal them.
* Live: new posts, edits, deletions and like counts go to `pod:<id>` (posts outside pods have
  no room); the author is notified (and pushed to `user:<id>`) when someone else likes, once
  per user: liking again after an unlike tells nobody.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Analytics, Kind
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra import readcache, validation
from ..infra.dbtypes import Conn, Executor
from ..infra.readcache import Encoded, ReadCache
from ..moderation.service import ModerationContext, ModerationService
from ..notifications.effects import AfterCommit, Units
from ..notifications.service import NewNotification
from ..pods.service import PodService, is_moderator
from ..resources.db import uploads as uploads_db
from ..resources.uploads import UploadService
from .db import posts as posts_db
from .reports import ReportResult, ReportService

# Each feed type is served by the query of the same name; inside one pod, by `_POD_SOURCES`.
FEED_TYPES: tuple[posts_db.FeedSource, ...] = ("all", "my-pods", "bookmarked", "trending")
INTERACTIONS = ("like", "bookmark", "share", "report")
MAX_CONTENT = 10_000
MAX_MEDIA = 10
MAX_FEED_LIMIT = 50
_POD_SOURCES: dict[str, posts_db.FeedSource] = {
    "all": "pod",
    "my-pods": "pod",
    "trending": "pod-trending",
    "bookmarked": "bookmarked",
}
_KEY_TYPES: dict[str, type] = {
    "timestamptz": dt.datetime,
    "uuid": uuid.UUID,
    "float8": float,
    "boolean": bool,
}


class AuthorBrief(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    username: str
    first_name: str
    last_name: str
    avatar_url: str | None
    is_verified: bool


class Media(msgspec.Struct, rename="camel"):
    upload_id: uuid.UUID
    filename: str
    size: int
    type: str
    url: str | None
    expires_at: dt.datetime | None


class Post(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    pod_id: uuid.UUID | None
    pod_name: str | None
    author: AuthorBrief | None
    is_anonymous: bool
    is_mine: bool
    content: str
    post_type: str
    media_urls: list[str]
    attachments: list[Media]
    tags: list[str]
    is_pinned: bool
    visibility: str
    status: str
    like_count: int
    comment_count: int
    share_count: int
    bookmark_count: int
    liked: bool
    bookmarked: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    # a question's answer its author accepted (POST /api/posts/{id}/accepted-answer)
    accepted_comment_id: uuid.UUID | None = None


class AcceptAnswer(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    comment_id: uuid.UUID


class AcceptedAnswer(msgspec.Struct, rename="camel"):
    post_id: uuid.UUID
    comment_id: uuid.UUID
    changed: bool


class FeedPage(msgspec.Struct, rename="camel"):
    type: str
    pod_id: uuid.UUID | None
    posts: list[Post]
    next_cursor: str | None


class AttachmentRef(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    upload_id: uuid.UUID


class PostCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    content: str
    post_type: str = "general"
    pod_id: uuid.UUID | None = None
    media_urls: list[str] = []
    tags: list[str] = []
    is_anonymous: bool = False
    visibility: str | None = None
    is_pinned: bool = False
    attachments: list[AttachmentRef] = []


class PostUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    content: str | msgspec.UnsetType = msgspec.UNSET
    post_type: str | msgspec.UnsetType = msgspec.UNSET
    media_urls: list[str] | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    visibility: str | msgspec.UnsetType = msgspec.UNSET
    is_pinned: bool | msgspec.UnsetType = msgspec.UNSET


class FeedQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str = "all"
    pod_id: uuid.UUID | None = None
    limit: int = 20
    cursor: str | None = None


class InteractionRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str
    active: bool | None = None
    reason: str | None = None
    description: str | None = None


class InteractionResult(msgspec.Struct, rename="camel"):
    post_id: uuid.UUID
    type: str
    active: bool
    changed: bool
    like_count: int
    comment_count: int
    share_count: int
    bookmark_count: int
    report: ReportResult | None = None


def reveals_author(row: asyncpg.Record, viewer: Principal | None) -> bool:
    """Whether `viewer` (None: a room of pod members) may see who wrote `row`."""
    if not row["is_anonymous"]:
        return True
    if viewer is None:
        return False
    return row["author_id"] == viewer.user_id or is_moderator(viewer, row["my_pod_role"])


def author_brief(row: asyncpg.Record) -> AuthorBrief | None:
    if row["author_id"] is None or row["author_username"] is None:
        return None
    return AuthorBrief(
        id=row["author_id"],
        username=row["author_username"],
        first_name=row["author_first_name"],
        last_name=row["author_last_name"],
        avatar_url=row["author_avatar_url"],
        is_verified=bool(row["author_is_verified"]),
    )


def room_of(pod_id: uuid.UUID | None, visibility: str) -> str | None:
    """The live room that may hear about a post: its pod's, unless it is private."""
    return f"pod:{pod_id}" if pod_id is not None and visibility != "private" else None


def _media_urls(values: list[str]) -> list[str]:
    if len(values) > MAX_MEDIA:
        raise Invalid("mediaUrls", f"at most {MAX_MEDIA} media URLs")
    return [validation.http_url(v, f"mediaUrls[{i}]") for i, v in enumerate(values)]


@dataclass(frozen=True, slots=True)
class _NewPost:
    """A new post's checked values."""

    content: str
    post_type: str
    tags: list[str]
    media_urls: list[str]
    visibility: str


class PostService:
    def __init__(
        self,
        units: Units,
        pods: PodService,
        reports: ReportService,
        uploads: UploadService,
        moderation: ModerationService | None = None,
    ) -> None:
        self.units = units
        self.db = units.db
        self.pods = pods
        self.reports = reports
        self.uploads = uploads
        # hot pages per viewer (the app gives it its Redis and TTL; off until then)
        self.reads = ReadCache(None, "", ttl=0)
        self.moderation = moderation

    # --- rendering ---------------------------------------------------------------------------

    async def _media(self, attachments: Any) -> list[Media]:
        out: list[Media] = []
        for item in attachments or []:
            link = await self.uploads.link_for_attachment(item)
            out.append(
                Media(
                    upload_id=uuid.UUID(item["uploadId"]),
                    filename=item["filename"],
                    size=item["size"],
                    type=item["type"],
                    url=link.url if link else None,
                    expires_at=link.expires_at if link else None,
                )
            )
        return out

    async def render(self, row: asyncpg.Record, viewer: Principal | None) -> Post:
        """A post as `viewer` may see it (None: as broadcast to the pod's room)."""
        return Post(
            id=row["id"],
            pod_id=row["pod_id"],
            pod_name=row["pod_name"],
            author=author_brief(row) if reveals_author(row, viewer) else None,
            is_anonymous=row["is_anonymous"],
            is_mine=viewer is not None and row["author_id"] == viewer.user_id,
            content=row["content"],
            post_type=row["post_type"],
            media_urls=list(row["media_urls"] or []),
            attachments=await self._media(row["attachments"]),
            tags=list(row["tags"] or []),
            is_pinned=row["is_pinned"],
            visibility=row["visibility"],
            status=row["status"],
            like_count=row["like_count"],
            comment_count=row["comment_count"],
            share_count=row["share_count"],
            bookmark_count=row["bookmark_count"],
            liked=viewer is not None and row["liked"],
            bookmarked=viewer is not None and row["bookmarked"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            accepted_comment_id=row["accepted_comment_id"],
        )

    async def render_many(self, rows: list[asyncpg.Record], viewer: Principal) -> list[Post]:
        return [await self.render(r, viewer) for r in rows]

    async def visible_row(
        self, db: Executor, principal: Principal, post_id: uuid.UUID
    ) -> asyncpg.Record:
        row = await posts_db.get_visible(db, principal.user_id, post_id)
        if row is None:
            raise NotFound("post not found")
        return row

    # --- feeds -------------------------------------------------------------------------------

    async def feed(
        self, principal: Principal, query: FeedQuery, *, generation: int | None = None
    ) -> Encoded[FeedPage]:
        """One page of a feed for `principal`, as its response body (`.decode()` for the page
        itself). `generation`: the read cache's, read before the request wrote anything
        (infra/readcache.py); None reads it now."""
        kind = validation.one_of(query.type, "type", FEED_TYPES)
        if not 1 <= query.limit <= MAX_FEED_LIMIT:
            raise Invalid("limit", f"must be between 1 and {MAX_FEED_LIMIT}")
        if query.pod_id is not None:
            if query.type == "my-pods":
                await self.pods.require_member(principal, query.pod_id)
            else:
                await self.pods.visible_pod(principal, query.pod_id)
            source = _POD_SOURCES[kind]
        else:
            source = kind
        listing = f"feed:{source}:{query.pod_id or ''}"
        key_types = tuple(_KEY_TYPES[t] for _, t in posts_db.SORT_KEYS[source])
        after = cursors.decode(query.cursor, listing, key_types) if query.cursor else None

        async def page() -> FeedPage:
            return await self._feed_page(principal, query, source, listing, after, key_types)

        # authorized above; the key is this viewer's own (render depends on who asks)
        return await self.reads.get_or_make_encoded(
            self.db.pool,
            readcache.FEED,
            principal.user_id,
            f"{principal.role}|{query.type}|{source}|{query.pod_id}|{query.cursor}|{query.limit}",
            FeedPage,
            page,
            generation=generation,
        )

    async def _feed_page(
        self,
        principal: Principal,
        query: FeedQuery,
        source: posts_db.FeedSource,
        listing: str,
        after: tuple[Any, ...] | None,
        key_types: tuple[Any, ...],
    ) -> FeedPage:
        rows = await posts_db.feed_page(
            self.db.pool,
            principal.user_id,
            source,
            pod_id=query.pod_id,
            after=after,
            limit=query.limit + 1,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        next_cursor = None
        if more:
            last = rows[-1]
            next_cursor = cursors.encode(
                listing, tuple(last[f"k{i}"] for i in range(len(key_types)))
            )
        return FeedPage(
            type=query.type,
            pod_id=query.pod_id,
            posts=await self.render_many(rows, principal),
            next_cursor=next_cursor,
        )

    # --- posts -------------------------------------------------------------------------------

    async def get(self, principal: Principal, post_id: uuid.UUID) -> Post:
        return await self.render(
            await self.visible_row(self.db.pool, principal, post_id), principal
        )

    async def create(self, principal: Principal, body: PostCreate) -> Post:
        await self.screen_new(principal, body)
        async with self.units.begin() as (conn, effects):
            row = await self.create_in(conn, effects, principal, body, screened=True)
        return await self.render(row, principal)

    async def _check_new(self, db: Executor, principal: Principal, body: PostCreate) -> _NewPost:
        """Validate a new post and check the author may publish it (in its pod, pinned, as an
        announcement); raises the 422/403/404 that applies."""
        content = validation.text(body.content, "content", max_len=MAX_CONTENT)
        post_type = validation.one_of(body.post_type, "postType", posts_db.POST_TYPES)
        tags = validation.tags(body.tags)
        media_urls = _media_urls(body.media_urls)
        visibility = body.visibility or ("pod" if body.pod_id else "public")
        validation.one_of(visibility, "visibility", posts_db.VISIBILITIES)
        if visibility == "pod" and body.pod_id is None:
            raise Invalid("visibility", "'pod' needs a podId")
        if len(body.attachments) > MAX_MEDIA:
            raise Invalid("attachments", f"at most {MAX_MEDIA} attachments")
        role: str | None = None
        if body.pod_id is not None:
            role = await self.pods.require_member(principal, body.pod_id, db=db)
        if (body.is_pinned or post_type == "announcement") and not is_moderator(principal, role):
            what = "pin posts" if body.is_pinned else "post announcements"
            raise Forbidden(f"only moderators may {what}", code="insufficient_role")
        return _NewPost(content, post_type, tags, media_urls, visibility)

    async def screen_new(
        self, principal: Principal, body: PostCreate, *, dedupe_key: str | None = None
    ) -> None:
        """Check a new post, then pass it through moderation: raises HeldForReview (422) when
        it is held. Call before the transaction that stores it opens: moderation may call an
        external API and stores held posts on a connection of its own."""
        checked = await self._check_new(self.db.pool, principal, body)
        if self.moderation is not None:
            await self.moderation.screen(
                principal,
                "post",
                checked.content,
                msgspec.to_builtins(body),
                ModerationContext(pod_id=body.pod_id),
                dedupe_key=dedupe_key,
            )

    async def create_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        body: PostCreate,
        *,
        screened: bool = False,
    ) -> asyncpg.Record:
        """Create a post in the caller's transaction. `screened`: it passed `screen_new` before
        the transaction opened, or a moderator approved it."""
        if not screened and self.moderation is not None:
            raise RuntimeError("screen a new post (screen_new) before its transaction opens")
        checked = await self._check_new(conn, principal, body)
        post_id = uuid.uuid4()
        attachments = await self._attach(conn, principal, post_id, body.attachments)
        await posts_db.insert_post(
            conn,
            {
                "id": post_id,
                "author_id": principal.user_id,
                "pod_id": body.pod_id,
                "content": checked.content,
                "post_type": checked.post_type,
                "media_urls": checked.media_urls,
                "attachments": attachments,
                "tags": checked.tags,
                "is_pinned": body.is_pinned,
                "is_anonymous": body.is_anonymous,
                "visibility": checked.visibility,
            },
        )
        row = await self.visible_row(conn, principal, post_id)
        await self.units.analytics.record(
            conn,
            principal.user_id,
            Kind.POST_CREATED,
            occurred_at=dt.datetime.now(dt.UTC),
            pod_id=body.pod_id,
            meta={"postId": str(post_id), "postType": checked.post_type},
            dedupe_key=str(post_id),
            after=effects,
        )
        room = room_of(body.pod_id, checked.visibility)
        if room is not None:
            post = await self.render(row, None)
            effects.event(room, "post_created", msgspec.to_builtins(post))
        return row

    async def publish_approved(self, author: Principal, snapshot: dict[str, Any]) -> uuid.UUID:
        """Store a post that was held for review and then approved by a moderator: a new post,
        or an edit (the snapshot names the post in `editOf`) applied to its post."""
        if "editOf" in snapshot:
            edit_of = uuid.UUID(snapshot["editOf"])
            edit = msgspec.convert({k: v for k, v in snapshot.items() if k != "editOf"}, PostUpdate)
            async with self.units.begin() as (conn, effects):
                await self.update_in(conn, effects, author, edit_of, edit, screened=True)
            return edit_of
        body = msgspec.convert(snapshot, PostCreate)
        async with self.units.begin() as (conn, effects):
            row = await self.create_in(conn, effects, author, body, screened=True)
        post_id: uuid.UUID = row["id"]
        return post_id

    async def _attach(
        self, conn: Conn, principal: Principal, post_id: uuid.UUID, refs: list[AttachmentRef]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, ref in enumerate(refs):
            row = await uploads_db.attach(conn, ref.upload_id, principal.user_id, "post", post_id)
            if row is None:
                raise Invalid(f"attachments[{i}].uploadId", "is not an unused upload of yours")
            out.append(UploadService.attachment(row))
        return out

    async def update(self, principal: Principal, post_id: uuid.UUID, body: PostUpdate) -> Post:
        await self.screen_edit(principal, post_id, body)
        async with self.units.begin() as (conn, effects):
            row = await self.update_in(conn, effects, principal, post_id, body, screened=True)
        return await self.render(row, principal)

    @staticmethod
    def _edit_values(body: PostUpdate) -> dict[str, Any]:
        """The fields an edit gives (snake_case), checked one by one."""
        given = {
            f: getattr(body, f)
            for f in body.__struct_fields__
            if getattr(body, f) is not msgspec.UNSET
        }
        if not given:
            raise Invalid("body", "no post fields to change")
        values = dict(given)
        if "content" in given:
            values["content"] = validation.text(given["content"], "content", max_len=MAX_CONTENT)
        if "post_type" in given:
            values["post_type"] = validation.one_of(
                given["post_type"], "postType", posts_db.POST_TYPES
            )
        if "tags" in given:
            values["tags"] = validation.tags(given["tags"])
        if "media_urls" in given:
            values["media_urls"] = _media_urls(given["media_urls"])
        if "visibility" in given:
            values["visibility"] = validation.one_of(
                given["visibility"], "visibility", posts_db.VISIBILITIES
            )
        return values

    @staticmethod
    def _changes(
        principal: Principal, values: dict[str, Any], post: asyncpg.Record, pod_role: str | None
    ) -> dict[str, Any]:
        """What the edit changes in `post`, if the principal (`pod_role` in its pod) may make
        each change."""
        moderator = is_moderator(principal, pod_role)
        if set(values) - {"is_pinned"} and post["author_id"] != principal.user_id:
            raise Forbidden("only the author can edit a post", code="not_author")
        if values.get("post_type") == "announcement" and not moderator:
            raise Forbidden("only moderators may post announcements", code="insufficient_role")
        if values.get("visibility") == "pod" and post["pod_id"] is None:
            raise Invalid("visibility", "'pod' needs the post to be in a pod")
        changes = {k: v for k, v in values.items() if k != "is_pinned"}
        if "is_pinned" in values and values["is_pinned"] != post["is_pinned"]:
            if not moderator:
                raise Forbidden("only moderators may pin posts", code="insufficient_role")
            changes["is_pinned"] = values["is_pinned"]
        return changes

    async def screen_edit(
        self,
        principal: Principal,
        post_id: uuid.UUID,
        body: PostUpdate,
        *,
        dedupe_key: str | None = None,
    ) -> None:
        """Check an edit and, when it changes the content, pass the new content through
        moderation: raises HeldForReview (422) and changes nothing when it is held (a
        moderator's approval applies the edit then, see `publish_approved`). Call before the
        transaction that applies the edit opens."""
        values = self._edit_values(body)
        if self.moderation is None or "content" not in values:
            return
        post = await self.visible_row(self.db.pool, principal, post_id)
        changes = self._changes(principal, values, post, post["my_pod_role"])
        content: str = changes["content"]
        if content == post["content"]:
            return
        context = ModerationContext(pod_id=post["pod_id"])
        # Not the rules about the author's recent posts: an edit would be compared with the
        # very post it changes (a typo fix is over 90% similar to it).
        verdict = await self.moderation.review(principal, "post", content, context, history=False)
        if verdict.allowed:
            return
        snapshot = {"editOf": str(post_id), **msgspec.to_builtins(body)}
        held = await self.moderation.hold(
            principal, "post", content, snapshot, verdict, context, dedupe_key=dedupe_key
        )
        if held.status != "approved":
            raise held.error("content")

    async def update_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        post_id: uuid.UUID,
        body: PostUpdate,
        *,
        screened: bool = False,
    ) -> asyncpg.Record:
        """Apply an edit in the caller's transaction. `screened`: it passed `screen_edit`
        before the transaction opened, or a moderator approved it."""
        values = self._edit_values(body)
        current = await self.visible_row(conn, principal, post_id)
        locked = await posts_db.lock(conn, post_id)
        if locked is None or locked["status"] not in ("published", "hidden"):
            raise NotFound("post not found")
        changes = self._changes(principal, values, locked, current["my_pod_role"])
        if (
            not screened
            and self.moderation is not None
            and changes.get("content", locked["content"]) != locked["content"]
        ):
            raise RuntimeError("screen an edit (screen_edit) before its transaction opens")
        if changes:
            await posts_db.update_post(conn, post_id, changes)
        row = await self.visible_row(conn, principal, post_id)
        before = room_of(locked["pod_id"], locked["visibility"])
        after = room_of(row["pod_id"], row["visibility"])
        if after is not None:
            post = await self.render(row, None)
            effects.event(after, "post_updated", msgspec.to_builtins(post))
        elif before is not None:
            effects.event(before, "post_deleted", {"postId": str(post_id)})
        return row

    async def delete(self, principal: Principal, post_id: uuid.UUID) -> None:
        async with self.units.begin() as (conn, effects):
            await self.delete_in(conn, effects, principal, post_id)

    async def delete_in(
        self, conn: Conn, effects: AfterCommit, principal: Principal, post_id: uuid.UUID
    ) -> None:
        current = await self.visible_row(conn, principal, post_id)
        locked = await posts_db.lock(conn, post_id)
        if locked is None or locked["status"] not in ("published", "hidden"):
            raise NotFound("post not found")
        if locked["author_id"] != principal.user_id and not is_moderator(
            principal, current["my_pod_role"]
        ):
            raise Forbidden(
                "only the author or a moderator can delete a post", code="insufficient_role"
            )
        await posts_db.set_status(conn, post_id, "deleted")
        room = room_of(locked["pod_id"], locked["visibility"])
        if room is not None:
            effects.event(room, "post_deleted", {"postId": str(post_id)})

    # --- interactions --------------------------------------------------------------------------

    async def interact(
        self, principal: Principal, post_id: uuid.UUID, body: InteractionRequest
    ) -> InteractionResult:
        async with self.units.begin() as (conn, effects):
            return await self.interact_in(
                conn,
                effects,
                principal,
                post_id,
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
        post_id: uuid.UUID,
        kind: str,
        *,
        active: bool | None = None,
        reason: str | None = None,
        description: str | None = None,
    ) -> InteractionResult:
        validation.one_of(kind, "type", INTERACTIONS)
        row = await self.visible_row(conn, principal, post_id)
        me = principal.user_id
        report: ReportResult | None = None
        changed = False
        if kind == "report":
            if active is False:
                raise Invalid("active", "a report cannot be withdrawn")
            report = await self.reports.report_in(
                conn, effects, principal, "post", post_id, reason=reason, description=description
            )
            active, changed = True, not report.already_reported
        else:
            if row["status"] != "published":
                raise Conflict("this post is held for review", code="post_hidden")
            if kind == "share":
                if active is False:
                    raise Invalid("active", "a share cannot be undone")
                active = True
            if active is None:
                # Toggle from the state this request saw. Two racing copies of one click both
                # see the same state and both ask for the same change, which happens once.
                active = not await posts_db.has_interaction(conn, post_id, me, kind)
            if active:
                changed = await posts_db.add_interaction(conn, post_id, me, kind)
            else:
                changed = await posts_db.remove_interaction(conn, post_id, me, kind)
        counts = await posts_db.counts(conn, post_id)
        if changed and kind == "like" and active:
            await record_like(
                self.units.analytics,
                conn,
                effects,
                me,
                row["author_id"],
                "post",
                post_id,
                row["pod_id"],
            )
        if changed and kind == "like":
            self._publish_like_count(effects, row)
            if (
                active
                and row["author_id"] is not None
                and row["author_id"] != me
                and await posts_db.first_like_notice(conn, post_id, me)
            ):
                effects.push(
                    await self.units.notifications.store(
                        conn,
                        NewNotification(
                            recipient_id=row["author_id"],
                            notification_type="post_like",
                            title=f"{principal.username} liked your post",
                            message=row["content"][:140],
                            action_url=f"/posts/{post_id}",
                            metadata={
                                "postId": str(post_id),
                                "podId": str(row["pod_id"]) if row["pod_id"] else None,
                                "likeCount": counts["like_count"],
                            },
                            sender_id=me,
                        ),
                    )
                )
        return InteractionResult(
            post_id=post_id,
            type=kind,
            active=bool(active),
            changed=changed,
            like_count=counts["like_count"],
            comment_count=counts["comment_count"],
            share_count=counts["share_count"],
            bookmark_count=counts["bookmark_count"],
            report=report,
        )

    def _publish_like_count(self, effects: AfterCommit, row: asyncpg.Record) -> None:
        room = room_of(row["pod_id"], row["visibility"])
        if room is None:
            return
        post_id = str(row["id"])

        async def publish() -> None:
            # Read the count after commit: with concurrent likes the last event carries the
            # final number, whichever transaction committed last.
            fresh = await posts_db.counts(self.db.pool, row["id"])
            await self.units.live.event(
                room, "post_like_count", {"postId": post_id, "likeCount": fresh["like_count"]}
            )

        effects.add(publish)


async def record_like(
    analytics: Analytics,
    conn: Conn,
    effects: AfterCommit,
    liker: uuid.UUID,
    author: uuid.UUID | None,
    target: str,
    target_id: uuid.UUID,
    pod_id: uuid.UUID | None,
) -> None:
    """A like given (and received by the author, unless they liked their own): once per
    liker and thing, however often it is unliked and liked again."""
    at = dt.datetime.now(dt.UTC)
    meta = {f"{target}Id": str(target_id)}
    await analytics.record(
        conn,
        liker,
        Kind.LIKE_GIVEN,
        occurred_at=at,
        pod_id=pod_id,
        meta=meta,
        dedupe_key=f"{target}:{target_id}",
        after=effects,
    )
    if author is not None and author != liker:
        await analytics.record(
            conn,
            author,
            Kind.LIKE_RECEIVED,
            occurred_at=at,
            pod_id=pod_id,
            meta={**meta, "fromUserId": str(liker)},
            dedupe_key=f"{target}:{target_id}:{liker}",
            after=effects,
        )


# the application's key for what this module provides (typed app state)
POSTS = web.AppKey("posts", PostService)
