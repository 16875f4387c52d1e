"""/api/moderation: content held by moderation, for its reviewers (and its author)."""

from __future__ import annotations

from aiohttp import web

from ..moderation.service import MODERATION, HeldItem, HeldPage, HeldQuery, ReviewBody
from .contract import operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()

# The reference held item is the member's comment in the private pod: its author sees it, the
# pod's moderators and platform moderators review it.
_REVIEWERS = signed_in(404, member=403, moderator=200, owner=200, admin=200)


@routes.get("/api/moderation/held")
@operation(tag="moderation", errors=(403, 404), access=signed_in(200))
async def list_held(request: web.Request, query: HeldQuery) -> HeldPage:
    """Held content the caller reviews, or (mine=true) their own held content."""
    return await request.app[MODERATION].list_held(principal(request), query)


@routes.get("/api/moderation/held/{heldId}")
@operation(tag="moderation", access=signed_in(404, member=200, moderator=200, owner=200, admin=200))
async def get_held(request: web.Request) -> HeldItem:
    """One held item (its author and its reviewers)."""
    held_id = path_id(request, "heldId", "held item")
    return await request.app[MODERATION].get(principal(request), held_id)


@routes.post("/api/moderation/held/{heldId}/approve")
@operation(tag="moderation", empty_body=True, errors=(403, 409), access=_REVIEWERS)
async def approve(request: web.Request, body: ReviewBody) -> HeldItem:
    """Publish a held item as its author (reviewers)."""
    held_id = path_id(request, "heldId", "held item")
    return await request.app[MODERATION].approve(principal(request), held_id, body.reason)


@routes.post("/api/moderation/held/{heldId}/reject")
@operation(tag="moderation", empty_body=True, errors=(403, 409), access=_REVIEWERS)
async def reject(request: web.Request, body: ReviewBody) -> HeldItem:
    """Keep a held item unpublished (reviewers)."""
    held_id = path_id(request, "heldId", "held item")
    return await request.app[MODERATION].reject(principal(request), held_id, body.reason)
