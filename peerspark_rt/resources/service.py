"""The resource vault: study materials, who they are shared with, ratings and downloads.

Rules:
* Who sees a resource: see `db.resources.visible` (owner, public, shared with me, shared with a
  pod I belong to) - the same rule for listing, fetching, search, suggestions and downloads.
  Anyone else gets 404.
* Creating one in a pod (podId) shares it with that pod (view); you must belong to the pod.
* Permissions: view < edit (change fields) < admin (also share, make public) < owner (also
  delete). Deleting is soft (status 'deleted') and deletes the uploaded file from storage.
* Ratings: 1-5 with an optional review, one per user (rating again updates it), never your
  own resource; `ratingAverage` and `ratingCount` are recomputed from the ratings by a trigger.
* Views count when someone other than the owner opens it; downloads when a link is handed out.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Kind
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import validation
from ..infra.dbtypes import Conn
from ..notifications.effects import AfterCommit, Units
from ..notifications.service import NewNotification
from ..pods import db as pods_db
from ..pods.service import PodService
from . import db as resources_db
from .db import MARK_END, MARK_START
from .db import uploads as uploads_db
from .uploads import FileLink, UploadService

MAX_CONTENT = 200_000
PERMISSION_NAMES = {4: "owner", 3: "admin", 2: "edit", 1: "view"}


def permission_name(level: int | None, is_public: bool) -> str | None:
    """What a resource shows as the viewer's permission: their strongest grant (resources_db
    .permission), else view when it is public."""
    return PERMISSION_NAMES.get(level) if level else ("view" if is_public else None)


class Owner(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    username: str
    first_name: str
    last_name: str
    avatar_url: str | None


class Share(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    resource_id: uuid.UUID
    shared_with_user_id: uuid.UUID | None
    shared_with_pod_id: uuid.UUID | None
    permission_level: str
    shared_by_id: uuid.UUID | None
    created_at: dt.datetime


class Resource(msgspec.Struct, rename="camel", omit_defaults=True):
    id: uuid.UUID
    owner: Owner | None
    pod_id: uuid.UUID | None
    title: str
    description: str | None
    resource_type: str
    file_url: str | None
    file: FileLink | None
    file_size: int | None
    file_type: str | None
    thumbnail_url: str | None
    tags: list[str]
    subject: str | None
    difficulty_level: str | None
    is_public: bool
    download_count: int
    view_count: int
    rating_average: float
    rating_count: int
    status: str
    my_permission: str | None
    my_rating: int | None
    bookmarked: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    content: str | None = None
    my_review: str | None = None
    shares: list[Share] | None = None
    score: float | None = None
    highlights: dict[str, str] | None = None


class ResourceCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str
    resource_type: str
    description: str | None = None
    content: str | None = None
    file_url: str | None = None
    upload_id: uuid.UUID | None = None
    thumbnail_url: str | None = None
    tags: list[str] = []
    subject: str | None = None
    difficulty_level: str | None = None
    is_public: bool = False
    pod_id: uuid.UUID | None = None


class ResourceUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    resource_type: str | msgspec.UnsetType = msgspec.UNSET
    content: str | msgspec.UnsetType | None = msgspec.UNSET
    file_url: str | msgspec.UnsetType | None = msgspec.UNSET
    thumbnail_url: str | msgspec.UnsetType | None = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    subject: str | msgspec.UnsetType | None = msgspec.UNSET
    difficulty_level: str | msgspec.UnsetType | None = msgspec.UNSET
    is_public: bool | msgspec.UnsetType = msgspec.UNSET


class ShareRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    permission_level: str = "view"
    share_with_user_id: uuid.UUID | None = None
    share_with_pod_id: uuid.UUID | None = None


class RateRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    rating: int
    review: str | None = None


class ToggleRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    active: bool | None = None


class RatingResult(msgspec.Struct, rename="camel"):
    resource_id: uuid.UUID
    rating: int
    review: str | None
    rating_average: float
    rating_count: int
    created: bool


class BookmarkResult(msgspec.Struct, rename="camel"):
    resource_id: uuid.UUID
    bookmarked: bool
    changed: bool


class Download(msgspec.Struct, rename="camel"):
    resource_id: uuid.UUID
    url: str
    expires_at: dt.datetime | None
    filename: str | None
    size: int | None
    type: str | None
    download_count: int


def highlight_html(text: str | None) -> str | None:
    """ts_headline output -> safe HTML with <mark>; None when nothing matched."""
    if not text or MARK_START not in text:
        return None
    escaped = html.escape(text, quote=False)
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def _values(given: dict[str, Any]) -> dict[str, Any]:
    """Validate resource fields (snake_case names, camelCase errors) into column values."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        match name:
            case "title":
                out[name] = validation.text(value, "title", max_len=255)
            case "description":
                out[name] = validation.optional_text(value, "description", 5000)
            case "resource_type":
                out[name] = validation.one_of(value, "resourceType", resources_db.RESOURCE_TYPES)
            case "content":
                out[name] = validation.optional_text(value, "content", MAX_CONTENT)
            case "file_url":
                out[name] = validation.optional_url(value, "fileUrl")
            case "thumbnail_url":
                out[name] = validation.optional_url(value, "thumbnailUrl")
            case "tags":
                out[name] = validation.tags(value)
            case "subject":
                out[name] = validation.optional_text(value, "subject", 100)
            case "difficulty_level":
                out[name] = (
                    None
                    if value is None
                    else validation.one_of(value, "difficultyLevel", resources_db.DIFFICULTIES)
                )
            case "is_public":
                out[name] = bool(value)
    return out


class ResourceService:
    def __init__(self, units: Units, pods: PodService, uploads: UploadService) -> None:
        self.units = units
        self.db = units.db
        self.pods = pods
        self.uploads = uploads

    # --- rendering ---------------------------------------------------------------------------

    async def render(
        self, row: asyncpg.Record, *, detail: bool = False, shares: list[Share] | None = None
    ) -> Resource:
        permission = permission_name(row["my_permission"], row["is_public"])
        file = await self.uploads.link_for_row(row)
        keys = set(row.keys())
        highlights = None
        if "hl_title" in keys and row["hl_title"] is not None:  # a search: always a dict
            found = {
                name: marked
                for name in ("title", "description", "content")
                if (marked := highlight_html(row[f"hl_{name}"])) is not None
            }
            highlights = found
        return Resource(
            id=row["id"],
            owner=(
                Owner(
                    id=row["owner_id"],
                    username=row["owner_username"],
                    first_name=row["owner_first_name"],
                    last_name=row["owner_last_name"],
                    avatar_url=row["owner_avatar_url"],
                )
                if row["owner_username"] is not None
                else None
            ),
            pod_id=row["pod_id"],
            title=row["title"],
            description=row["description"],
            resource_type=row["resource_type"],
            file_url=file.url if file else row["file_url"],
            file=file,
            file_size=row["file_size"],
            file_type=row["file_type"],
            thumbnail_url=row["thumbnail_url"],
            tags=list(row["tags"] or []),
            subject=row["subject"],
            difficulty_level=row["difficulty_level"],
            is_public=row["is_public"],
            download_count=row["download_count"],
            view_count=row["view_count"],
            rating_average=float(row["rating_average"] or Decimal(0)),
            rating_count=row["rating_count"],
            status=row["status"],
            my_permission=permission,
            my_rating=row["my_rating"],
            bookmarked=row["bookmarked"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            content=row["content"] if detail else None,
            my_review=row["my_review"] if detail else None,
            shares=shares,
            score=round(float(row["score"]), 6) if "score" in keys else None,
            highlights=highlights,
        )

    async def _visible(
        self, db: Any, principal: Principal, resource_id: uuid.UUID
    ) -> asyncpg.Record:
        row = await resources_db.get_visible(db, principal.user_id, resource_id)
        if row is None:
            raise NotFound("resource not found")
        return row

    async def _detail(self, db: Any, principal: Principal, resource_id: uuid.UUID) -> Resource:
        row = await self._visible(db, principal, resource_id)
        shares = None
        if (row["my_permission"] or 0) >= 3:
            shares = [Share(**dict(s)) for s in await resources_db.shares_of(db, resource_id)]
        return await self.render(row, detail=True, shares=shares)

    # --- CRUD ---------------------------------------------------------------------------------

    async def get(self, principal: Principal, resource_id: uuid.UUID) -> Resource:
        async with self.units.begin() as (conn, effects):
            row = await self._visible(conn, principal, resource_id)
            if row["owner_id"] != principal.user_id:
                await resources_db.count_view(conn, resource_id)
            await self._record_access(conn, effects, principal, row, Kind.RESOURCE_VIEWED)
        return await self._detail(self.db.pool, principal, resource_id)

    async def _record_access(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        row: asyncpg.Record,
        kind: Kind,
    ) -> None:
        """A view or download: at most one event per resource and UTC hour (a reader who
        reloads the page is still reading it)."""
        at = dt.datetime.now(dt.UTC)
        await self.units.analytics.record(
            conn,
            principal.user_id,
            kind,
            occurred_at=at,
            pod_id=row["pod_id"],
            meta={"resourceId": str(row["id"])},
            dedupe_key=f"{row['id']}:{at:%Y-%m-%dT%H}",
            after=effects,
        )

    async def create(self, principal: Principal, body: ResourceCreate) -> Resource:
        async with self.units.begin() as (conn, effects):
            resource_id = await self.create_in(conn, effects, principal, body)
            return await self._detail(conn, principal, resource_id)

    async def create_in(
        self, conn: Conn, effects: AfterCommit, principal: Principal, body: ResourceCreate
    ) -> uuid.UUID:
        values = _values(
            {
                f: getattr(body, f)
                for f in body.__struct_fields__
                if f not in ("upload_id", "pod_id")
            }
        )
        if values.get("file_url") and body.upload_id is not None:
            raise Invalid("uploadId", "give either fileUrl or uploadId, not both")
        if values["resource_type"] == "link" and not values.get("file_url"):
            raise Invalid("fileUrl", "is required for a link")
        if body.pod_id is not None:
            await self.pods.require_member(principal, body.pod_id, db=conn)
        resource_id = uuid.uuid4()
        if body.upload_id is not None:
            upload = await uploads_db.attach(
                conn, body.upload_id, principal.user_id, "resource", resource_id
            )
            if upload is None:
                raise Invalid("uploadId", "is not an unused upload of yours")
            values.update(
                upload_id=upload["id"],
                file_size=upload["size_bytes"],
                file_type=upload["content_type"],
            )
        values.update(id=resource_id, owner_id=principal.user_id, pod_id=body.pod_id)
        await resources_db.insert(conn, values)
        if body.pod_id is not None:
            await resources_db.upsert_share(
                conn,
                resource_id,
                user_id=None,
                pod_id=body.pod_id,
                permission_level="view",
                shared_by=principal.user_id,
            )
            effects.event(
                f"pod:{body.pod_id}",
                "resource_shared",
                {
                    "resourceId": str(resource_id),
                    "title": values["title"],
                    "podId": str(body.pod_id),
                },
            )
        return resource_id

    async def _locked(
        self, conn: Conn, principal: Principal, resource_id: uuid.UUID, need: int, action: str
    ) -> asyncpg.Record:
        """The visible resource, row-locked, if the caller's permission is at least `need`."""
        row = await self._visible(conn, principal, resource_id)
        await resources_db.lock(conn, resource_id)
        if (row["my_permission"] or 0) < need:
            raise Forbidden(
                f"you need {PERMISSION_NAMES[need]} permission to {action} this resource",
                code="insufficient_permission",
            )
        return row

    async def update(
        self, principal: Principal, resource_id: uuid.UUID, body: ResourceUpdate
    ) -> Resource:
        given = {
            f: getattr(body, f)
            for f in body.__struct_fields__
            if getattr(body, f) is not msgspec.UNSET
        }
        if not given:
            raise Invalid("body", "no resource fields to change")
        for required in ("title", "resource_type"):
            if required in given and given[required] is None:
                raise Invalid(
                    "title" if required == "title" else "resourceType", "must not be null"
                )
        changes = _values(given)
        async with self.units.begin() as (conn, _effects):
            row = await self._locked(conn, principal, resource_id, 2, "edit")
            if "is_public" in changes and (row["my_permission"] or 0) < 3:
                raise Forbidden(
                    "you need admin permission to change who sees this resource",
                    code="insufficient_permission",
                )
            if changes.get("file_url") and row["upload_id"] is not None:
                raise Invalid("fileUrl", "this resource holds an uploaded file")
            kind = changes.get("resource_type", row["resource_type"])
            url = changes["file_url"] if "file_url" in changes else row["file_url"]
            if kind == "link" and not url:
                raise Invalid("fileUrl", "is required for a link")
            await resources_db.update(conn, resource_id, changes)
            return await self._detail(conn, principal, resource_id)

    async def delete(self, principal: Principal, resource_id: uuid.UUID) -> None:
        async with self.units.begin() as (conn, effects):
            row = await self._locked(conn, principal, resource_id, 4, "delete")
            await resources_db.set_status(conn, resource_id, "deleted")
            if row["upload_id"] is not None:
                await resources_db.update(conn, resource_id, {"upload_id": None})
                upload = await uploads_db.delete(conn, row["upload_id"])
                if upload is not None:
                    # The bytes go once the row is gone for good (after commit).
                    async def discard(up: asyncpg.Record = upload) -> None:
                        await self.uploads.discard(up)

                    effects.add(discard)

    # --- sharing, rating, bookmarks, downloads -------------------------------------------------

    async def share(
        self, principal: Principal, resource_id: uuid.UUID, body: ShareRequest
    ) -> tuple[Share, bool]:
        level = validation.one_of(
            body.permission_level, "permissionLevel", resources_db.PERMISSIONS
        )
        if (body.share_with_user_id is None) == (body.share_with_pod_id is None):
            raise Invalid(
                "shareWithUserId", "give exactly one of shareWithUserId or shareWithPodId"
            )
        if (
            body.share_with_user_id is not None
            and await pods_db.get_user_brief(self.db.pool, body.share_with_user_id) is None
        ):
            raise Invalid("shareWithUserId", "no user has this id")
        if body.share_with_pod_id is not None:
            await self.pods.require_member(principal, body.share_with_pod_id)
        async with self.units.begin() as (conn, effects):
            row = await self._locked(conn, principal, resource_id, 3, "share")
            if body.share_with_user_id == row["owner_id"]:
                raise Invalid("shareWithUserId", "the owner already has every permission")
            share, created = await resources_db.upsert_share(
                conn,
                resource_id,
                user_id=body.share_with_user_id,
                pod_id=body.share_with_pod_id,
                permission_level=level,
                shared_by=principal.user_id,
            )
            if created:
                await self.units.analytics.record(
                    conn,
                    principal.user_id,
                    Kind.RESOURCE_SHARED,
                    occurred_at=dt.datetime.now(dt.UTC),
                    pod_id=row["pod_id"],
                    meta={
                        "resourceId": str(resource_id),
                        "withUserId": _str_or_none(body.share_with_user_id),
                        "withPodId": _str_or_none(body.share_with_pod_id),
                    },
                    dedupe_key=str(share["id"]),
                    after=effects,
                )
            if created and body.share_with_user_id is not None:
                effects.push(
                    await self.units.notifications.store(
                        conn,
                        NewNotification(
                            recipient_id=body.share_with_user_id,
                            notification_type="resource_shared",
                            title=f"{principal.username} shared “{row['title']}” with you",
                            action_url=f"/resources/{resource_id}",
                            metadata={"resourceId": str(resource_id), "permission": level},
                            sender_id=principal.user_id,
                        ),
                    )
                )
            if created and body.share_with_pod_id is not None:
                effects.event(
                    f"pod:{body.share_with_pod_id}",
                    "resource_shared",
                    {
                        "resourceId": str(resource_id),
                        "title": row["title"],
                        "podId": str(body.share_with_pod_id),
                    },
                )
        fields = {k: share[k] for k in Share.__struct_fields__}
        return Share(**fields), created

    async def rate(
        self, principal: Principal, resource_id: uuid.UUID, body: RateRequest
    ) -> RatingResult:
        async with self.units.begin() as (conn, effects):
            return await self.rate_in(conn, effects, principal, resource_id, body)

    async def rate_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        resource_id: uuid.UUID,
        body: RateRequest,
    ) -> RatingResult:
        if not 1 <= body.rating <= 5:
            raise Invalid("rating", "must be a whole number from 1 to 5")
        review = validation.optional_text(body.review, "review", 2000)
        row = await self._visible(conn, principal, resource_id)
        if row["owner_id"] == principal.user_id:
            raise Forbidden("you cannot rate your own resource", code="own_resource")
        rating = await resources_db.upsert_rating(
            conn, resource_id, principal.user_id, body.rating, review
        )
        summary = await resources_db.rating_summary(conn, resource_id)
        # the first rating is the act; changing it later is not another one
        await self.units.analytics.record(
            conn,
            principal.user_id,
            Kind.RESOURCE_RATED,
            occurred_at=dt.datetime.now(dt.UTC),
            pod_id=row["pod_id"],
            value=float(body.rating),
            meta={"resourceId": str(resource_id), "ownerId": _str_or_none(row["owner_id"])},
            dedupe_key=str(resource_id),
            after=effects,
        )
        return RatingResult(
            resource_id=resource_id,
            rating=rating["rating"],
            review=rating["review"],
            rating_average=float(summary["rating_average"]),
            rating_count=summary["rating_count"],
            created=bool(rating["created"]),
        )

    async def bookmark(
        self, principal: Principal, resource_id: uuid.UUID, active: bool | None
    ) -> BookmarkResult:
        async with self.units.begin() as (conn, effects):
            return await self.bookmark_in(conn, effects, principal, resource_id, active)

    async def bookmark_in(
        self,
        conn: Conn,
        effects: AfterCommit,
        principal: Principal,
        resource_id: uuid.UUID,
        active: bool | None,
    ) -> BookmarkResult:
        await self._visible(conn, principal, resource_id)
        me = principal.user_id
        if active is None:
            active = not await resources_db.has_bookmark(conn, resource_id, me)
        if active:
            changed = await resources_db.add_bookmark(conn, resource_id, me)
        else:
            changed = await resources_db.remove_bookmark(conn, resource_id, me)
        return BookmarkResult(resource_id, active, changed)

    async def download(self, principal: Principal, resource_id: uuid.UUID) -> Download:
        row = await self._visible(self.db.pool, principal, resource_id)
        link = await self.uploads.link_for_row(row)
        if link is None and not row["file_url"]:
            raise Conflict("this resource has no file to download", code="no_file")
        async with self.units.begin() as (conn, effects):
            count = await resources_db.count_download(conn, resource_id)
            await self._record_access(conn, effects, principal, row, Kind.RESOURCE_DOWNLOADED)
        if link is not None:
            return Download(
                resource_id, link.url, link.expires_at, link.filename, link.size, link.type, count
            )
        return Download(
            resource_id, row["file_url"], None, None, row["file_size"], row["file_type"], count
        )


def _str_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


# the application's key for what this module provides (typed app state)
RESOURCES = web.AppKey("resources", ResourceService)
