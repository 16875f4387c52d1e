"""/api/notifications: the inbox, read marks and preferences."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..services.notification_prefs import PreferencesUpdate
from .keys import NOTIFICATIONS
from .middleware import principal
from .render import json_response, path_id, read_body, read_query

routes = web.RouteTableDef()


class _InboxQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 20
    cursor: str | None = None
    unread: bool = False


@routes.get("/api/notifications")
async def inbox(request: web.Request) -> web.Response:
    q = read_query(request, _InboxQuery)
    page = await request.app[NOTIFICATIONS].list(
        principal(request).user_id, unread_only=q.unread, cursor=q.cursor, limit=q.limit
    )
    return json_response(page)


@routes.post("/api/notifications/read-all")
async def read_all(request: web.Request) -> web.Response:
    return json_response(await request.app[NOTIFICATIONS].mark_all_read(principal(request).user_id))


@routes.post("/api/notifications/{notificationId}/read")
async def read_one(request: web.Request) -> web.Response:
    notification_id = path_id(request, "notificationId", "notification")
    result = await request.app[NOTIFICATIONS].mark_read(principal(request).user_id, notification_id)
    return json_response(result)


@routes.get("/api/notifications/preferences")
async def get_preferences(request: web.Request) -> web.Response:
    return json_response(await request.app[NOTIFICATIONS].preferences(principal(request).user_id))


@routes.put("/api/notifications/preferences")
async def put_preferences(request: web.Request) -> web.Response:
    body = await read_body(request, PreferencesUpdate)
    result = await request.app[NOTIFICATIONS].update_preferences(principal(request).user_id, body)
    return json_response(result)
