"""/api/moderation: content held by moderation, for its reviewers (and its author)."""

from __future__ import annotations

from aiohttp import web

from ..services.moderation import HeldQuery, ReviewBody
from .keys import MODERATION
from .middleware import principal
from .render import json_response, path_id, read_body, read_query

routes = web.RouteTableDef()


@routes.get("/api/moderation/held")
async def list_held(request: web.Request) -> web.Response:
    """?podId&sessionId&status=pending|approved|rejected|all&kind&mine=true&limit&cursor"""
    query = read_query(request, HeldQuery)
    return json_response(await request.app[MODERATION].list_held(principal(request), query))


@routes.get("/api/moderation/held/{heldId}")
async def get_held(request: web.Request) -> web.Response:
    held_id = path_id(request, "heldId", "held item")
    return json_response(await request.app[MODERATION].get(principal(request), held_id))


@routes.post("/api/moderation/held/{heldId}/approve")
async def approve(request: web.Request) -> web.Response:
    held_id = path_id(request, "heldId", "held item")
    body = await read_body(request, ReviewBody, allow_empty=True)
    item = await request.app[MODERATION].approve(principal(request), held_id, body.reason)
    return json_response(item)


@routes.post("/api/moderation/held/{heldId}/reject")
async def reject(request: web.Request) -> web.Response:
    held_id = path_id(request, "heldId", "held item")
    body = await read_body(request, ReviewBody, allow_empty=True)
    item = await request.app[MODERATION].reject(principal(request), held_id, body.reason)
    return json_response(item)
