"""/api/mobile: the compact feed and offline sync."""

from __future__ import annotations

from aiohttp import web

from ..services.mobile import MobileFeedQuery, SyncRequest
from .keys import MOBILE
from .middleware import principal
from .render import json_response, read_body, read_query

routes = web.RouteTableDef()


@routes.get("/api/mobile/feed")
async def mobile_feed(request: web.Request) -> web.Response:
    query = read_query(request, MobileFeedQuery)
    return json_response(await request.app[MOBILE].feed(principal(request), query))


@routes.post("/api/mobile/sync")
async def mobile_sync(request: web.Request) -> web.Response:
    body = await read_body(request, SyncRequest)
    return json_response(await request.app[MOBILE].sync(principal(request), body))
