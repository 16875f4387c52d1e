"""/api/resources: the resource vault (GET /api/resources also searches it)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..infra.readcache import Encoded
from ..resources.service import (
    RESOURCES,
    BookmarkResult,
    Download,
    RateRequest,
    RatingResult,
    Resource,
    ResourceCreate,
    ResourceUpdate,
    Share,
    ShareRequest,
    ToggleRequest,
)
from ..search.service import SEARCH, ResourceQuery, ResourceSearchResult
from .contract import Raw, Reply, operation, signed_in
from .middleware import cached_read, principal, read_generation
from .render import path_id

routes = web.RouteTableDef()

# The reference resource is the owner's, in the private pod.
_IN_POD = {"outsider": 404, "banned": 404, "admin": 404}


class DownloadQuery(msgspec.Struct, forbid_unknown_fields=True):
    redirect: bool = False


@routes.get("/api/resources")
@cached_read
@operation(tag="resources", errors=(404,), access=signed_in(200))
async def list_resources(
    request: web.Request, query: ResourceQuery
) -> Encoded[ResourceSearchResult]:
    """Resources the caller can see, searched, filtered and faceted."""
    return await request.app[SEARCH].resources_page(
        principal(request), query, generation=read_generation(request)
    )


@routes.post("/api/resources")
@operation(tag="resources", status=201, errors=(403, 404, 409), access=signed_in(201, **_IN_POD))
async def create_resource(request: web.Request, body: ResourceCreate) -> Resource:
    """Add a resource (a link, a note, or an uploaded file)."""
    return await request.app[RESOURCES].create(principal(request), body)


@routes.get("/api/resources/{resourceId}")
@operation(tag="resources", access=signed_in(200, **_IN_POD))
async def get_resource(request: web.Request) -> Resource:
    """One resource the caller may see."""
    resource_id = path_id(request, "resourceId", "resource")
    return await request.app[RESOURCES].get(principal(request), resource_id)


@routes.put("/api/resources/{resourceId}")
@operation(tag="resources", errors=(403, 409), access=signed_in(403, owner=200, **_IN_POD))
async def update_resource(request: web.Request, body: ResourceUpdate) -> Resource:
    """Change a resource (edit permission or better)."""
    resource_id = path_id(request, "resourceId", "resource")
    return await request.app[RESOURCES].update(principal(request), resource_id, body)


@routes.delete("/api/resources/{resourceId}")
@operation(tag="resources", errors=(403,), access=signed_in(403, owner=204, **_IN_POD))
async def delete_resource(request: web.Request) -> None:
    """Delete a resource (its owner)."""
    resource_id = path_id(request, "resourceId", "resource")
    await request.app[RESOURCES].delete(principal(request), resource_id)


@routes.post("/api/resources/{resourceId}/share")
@operation(
    tag="resources",
    status=(201, 200),
    errors=(403, 409),
    access=signed_in(403, owner=201, **_IN_POD),
)
async def share_resource(request: web.Request, body: ShareRequest) -> Reply[Share]:
    """Share a resource with a user, with a permission; 200 when it only changed."""
    resource_id = path_id(request, "resourceId", "resource")
    share, created = await request.app[RESOURCES].share(principal(request), resource_id, body)
    return Reply(share, status=201 if created else 200)


@routes.post("/api/resources/{resourceId}/rate")
@operation(
    tag="resources",
    status=(201, 200),
    errors=(403, 409),
    access=signed_in(201, owner=403, **_IN_POD),
)
async def rate_resource(request: web.Request, body: RateRequest) -> Reply[RatingResult]:
    """Rate a resource (1-5, with an optional review); 200 when the rating was replaced."""
    resource_id = path_id(request, "resourceId", "resource")
    result = await request.app[RESOURCES].rate(principal(request), resource_id, body)
    return Reply(result, status=201 if result.created else 200)


@routes.post("/api/resources/{resourceId}/bookmark")
@operation(tag="resources", empty_body=True, access=signed_in(200, **_IN_POD))
async def bookmark_resource(request: web.Request, body: ToggleRequest) -> BookmarkResult:
    """Bookmark a resource (toggles, or sets `active`)."""
    resource_id = path_id(request, "resourceId", "resource")
    return await request.app[RESOURCES].bookmark(principal(request), resource_id, body.active)


@routes.get("/api/resources/{resourceId}/download")
@operation(
    tag="resources",
    errors=(409,),
    raw={302: Raw("text/plain", "with ?redirect=true: a redirect to the file")},
    access=signed_in(200, **_IN_POD),
)
async def download_resource(request: web.Request, query: DownloadQuery) -> Download:
    """A short-lived link to the resource's file (or its URL)."""
    resource_id = path_id(request, "resourceId", "resource")
    link = await request.app[RESOURCES].download(principal(request), resource_id)
    if query.redirect:
        raise web.HTTPFound(link.url)
    return link
