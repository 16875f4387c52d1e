"""/api/mobile: the compact feed and offline sync."""

from __future__ import annotations

from aiohttp import web

from ..social.mobile import MOBILE, MobileFeed, MobileFeedQuery, SyncRequest, SyncResponse
from .contract import operation, signed_in
from .middleware import principal

routes = web.RouteTableDef()


@routes.get("/api/mobile/feed")
@operation(tag="mobile", access=signed_in(200))
async def mobile_feed(request: web.Request, query: MobileFeedQuery) -> MobileFeed:
    """The home feed in its compact mobile form."""
    return await request.app[MOBILE].feed(principal(request), query)


@routes.post("/api/mobile/sync")
@operation(tag="mobile", errors=(429,), access=signed_in(200))
async def mobile_sync(request: web.Request, body: SyncRequest) -> SyncResponse:
    """Apply the changes a device made offline and return what changed since it last synced."""
    return await request.app[MOBILE].sync(principal(request), body)
