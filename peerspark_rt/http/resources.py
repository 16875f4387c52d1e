"""/api/resources: the resource vault (GET /api/resources also searches it)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..services.resources import (
    RateRequest,
    ResourceCreate,
    ResourceUpdate,
    ShareRequest,
    ToggleRequest,
)
from ..services.search import LIST_PARAMS, ResourceQuery
from .keys import RESOURCES, SEARCH
from .middleware import principal
from .render import json_response, no_content, path_id, read_body, read_query

routes = web.RouteTableDef()


class _DownloadQuery(msgspec.Struct, forbid_unknown_fields=True):
    redirect: bool = False


@routes.get("/api/resources")
async def list_resources(request: web.Request) -> web.Response:
    query = read_query(request, ResourceQuery, lists=LIST_PARAMS)
    return json_response(await request.app[SEARCH].resources_page(principal(request), query))


@routes.post("/api/resources")
async def create_resource(request: web.Request) -> web.Response:
    body = await read_body(request, ResourceCreate)
    return json_response(await request.app[RESOURCES].create(principal(request), body), status=201)


@routes.get("/api/resources/{resourceId}")
async def get_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    return json_response(await request.app[RESOURCES].get(principal(request), resource_id))


@routes.put("/api/resources/{resourceId}")
async def update_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    body = await read_body(request, ResourceUpdate)
    return json_response(await request.app[RESOURCES].update(principal(request), resource_id, body))


@routes.delete("/api/resources/{resourceId}")
async def delete_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    await request.app[RESOURCES].delete(principal(request), resource_id)
    return no_content()


@routes.post("/api/resources/{resourceId}/share")
async def share_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    body = await read_body(request, ShareRequest)
    share, created = await request.app[RESOURCES].share(principal(request), resource_id, body)
    return json_response(share, status=201 if created else 200)


@routes.post("/api/resources/{resourceId}/rate")
async def rate_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    body = await read_body(request, RateRequest)
    result = await request.app[RESOURCES].rate(principal(request), resource_id, body)
    return json_response(result, status=201 if result.created else 200)


@routes.post("/api/resources/{resourceId}/bookmark")
async def bookmark_resource(request: web.Request) -> web.Response:
    resource_id = path_id(request, "resourceId", "resource")
    body = await read_body(request, ToggleRequest, allow_empty=True)
    return json_response(
        await request.app[RESOURCES].bookmark(principal(request), resource_id, body.active)
    )


@routes.get("/api/resources/{resourceId}/download")
async def download_resource(request: web.Request) -> web.StreamResponse:
    resource_id = path_id(request, "resourceId", "resource")
    query = read_query(request, _DownloadQuery)
    link = await request.app[RESOURCES].download(principal(request), resource_id)
    if query.redirect:
        raise web.HTTPFound(link.url)
    return json_response(link)
