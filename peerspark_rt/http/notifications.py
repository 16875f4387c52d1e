"""/api/notifications: the inbox, read marks and preferences."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..notifications.prefs import PreferencesUpdate, PreferencesView
from ..notifications.push import (
    PUSH,
    PushKey,
    PushSubscribe,
    PushSubscription,
    PushUnsubscribe,
)
from ..notifications.service import NOTIFICATIONS, NotificationPage, ReadAllResult, ReadResult
from .contract import Reply, operation, signed_in
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


@routes.get("/api/notifications/push-key")
@operation(tag="notifications", errors=(503,), access=signed_in(200))
async def push_key(request: web.Request) -> PushKey:
    """The VAPID public key browsers subscribe with (applicationServerKey)."""
    return request.app[PUSH].key()


@routes.post("/api/notifications/push-subscriptions")
@operation(tag="notifications", status=(201, 200), errors=(503,), access=signed_in(201))
async def subscribe_push(request: web.Request, body: PushSubscribe) -> Reply[PushSubscription]:
    """Register a browser's push subscription (PushSubscription.toJSON()); 200 when the
    endpoint was known (its keys are updated)."""
    who = principal(request)
    sub = await request.app[PUSH].subscribe(who.user_id, body, request.headers.get("User-Agent"))
    return Reply(sub, status=201 if sub.created else 200)


@routes.delete("/api/notifications/push-subscriptions")
@operation(
    tag="notifications",
    errors=(404,),  # an endpoint this user never subscribed
    # the matrix names an endpoint nobody subscribed
    access=signed_in(404),
)
async def unsubscribe_push(request: web.Request, body: PushUnsubscribe) -> None:
    """Remove a push subscription by its endpoint."""
    await request.app[PUSH].unsubscribe(principal(request).user_id, body)
