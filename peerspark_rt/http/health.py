"""/health and /metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from .contract import Raw, Reply, access, operation
from .keys import HEALTH, METRICS, SETTINGS

routes = web.RouteTableDef()


class HealthReport(msgspec.Struct):
    status: str
    timestamp: str
    version: str
    node: str
    services: dict[str, Any]


@routes.get("/health")
@operation(tag="operations", public=True, status=(200, 503), access=access(200))
async def health(request: web.Request) -> Reply[HealthReport]:
    """Whether this node and the services it needs are healthy (503 when one is not)."""
    healthy, services = await request.app[HEALTH].report()
    body = HealthReport(
        status="healthy" if healthy else "unhealthy",
        timestamp=dt.datetime.now(dt.UTC).isoformat(),
        version=__version__,
        node=request.app[SETTINGS].node_id,
        services=services,
    )
    return Reply(body, status=200 if healthy else 503)


@routes.get("/metrics")
@operation(
    tag="operations",
    public=True,
    raw={200: Raw("text/plain", "Prometheus text exposition format")},
    access=access(200),
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this node."""
    await request.app[METRICS].refresh()
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
