"""/api/notifications: the inbox, read marks and preferences."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..notifications.prefs import PreferencesUpdate, PreferencesView
from ..notifications.service import NOTIFICATIONS, NotificationPage, ReadAllResult, ReadResult
from .contract import operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()


class InboxQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 20
    cursor: str | None = None
    unread: bool = False


@routes.get("/api/notifications")
@operation(tag="notifications", access=signed_in(200))
async def inbox(request: web.Request, query: InboxQuery) -> NotificationPage:
    """The caller's notifications, newest first (?unread=true for unread only)."""
    return await request.app[NOTIFICATIONS].list(
        principal(request).user_id, unread_only=query.unread, cursor=query.cursor, limit=query.limit
    )


@routes.post("/api/notifications/read-all")
@operation(tag="notifications", access=signed_in(200))
async def read_all(request: web.Request) -> ReadAllResult:
    """Mark every notification of the caller read."""
    return await request.app[NOTIFICATIONS].mark_all_read(principal(request).user_id)


@routes.post("/api/notifications/{notificationId}/read")
@operation(tag="notifications", access=signed_in(404, member=200))
async def read_one(request: web.Request) -> ReadResult:
    """Mark one of the caller's notifications read."""
    notification_id = path_id(request, "notificationId", "notification")
    return await request.app[NOTIFICATIONS].mark_read(principal(request).user_id, notification_id)


@routes.get("/api/notifications/preferences")
@operation(tag="notifications", access=signed_in(200))
async def get_preferences(request: web.Request) -> PreferencesView:
    """Which notifications reach the caller, and how (in app, push, email, digest)."""
    return await request.app[NOTIFICATIONS].preferences(principal(request).user_id)


@routes.put("/api/notifications/preferences")
@operation(tag="notifications", access=signed_in(200))
async def put_preferences(request: web.Request, body: PreferencesUpdate) -> PreferencesView:
    """Change the caller's notification preferences."""
    return await request.app[NOTIFICATIONS].update_preferences(principal(request).user_id, body)
