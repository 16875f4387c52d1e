"""/health and /metrics."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from .. import __version__
from .keys import HEALTH, METRICS, SETTINGS
from .render import json_response

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    healthy, services = await request.app[HEALTH].report()
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "version": __version__,
        "node": request.app[SETTINGS].node_id,
        "services": services,
    }
    return json_response(body, status=200 if healthy else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    await request.app[METRICS].refresh()
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
