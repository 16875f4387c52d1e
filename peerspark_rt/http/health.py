"""/health and /metrics.

/health answers every caller with the node's status (200 healthy, 503 not), so load balancers
need nothing; the details (each dependency, versions, pool sizes, the node id) only go to a
caller that presents METRICS_TOKEN as a bearer token, or a platform admin's access token.
/metrics needs METRICS_TOKEN when one is set; with METRICS_ADDRESS set it is served only on
that address (with full /health), and the public port answers 404 for it.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from ..accounts.auth import AUTH
from ..config import SETTINGS
from ..errors import AppError, Unauthorized
from ..infra.health import HEALTH
from .contract import Raw, Reply, access, operation
from .metrics import METRICS, METRICS_LISTENER
from .middleware import bearer_token

routes = web.RouteTableDef()


class HealthReport(msgspec.Struct, omit_defaults=True):
    """The node's status; the details only for the metrics token or a platform admin."""

    status: str
    timestamp: str | msgspec.UnsetType = msgspec.UNSET
    version: str | msgspec.UnsetType = msgspec.UNSET
    node: str | msgspec.UnsetType = msgspec.UNSET
    services: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


def _metrics_token_given(request: web.Request) -> bool:
    expected = request.app[SETTINGS].metrics_token
    if not expected:
        return False
    try:
        given = bearer_token(request)
    except Unauthorized:
        return False
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _may_see_details(request: web.Request) -> bool:
    if request.app.get(METRICS_LISTENER, False) or _metrics_token_given(request):
        return True
    try:
        token = bearer_token(request)
        if token is None or AUTH not in request.app:
            return False
        caller = await request.app[AUTH].authenticate(token)
    except AppError:
        return False  # a bad token only means no details: health checks never fail on it
    return caller.role == "admin"


@routes.get("/health")
@operation(tag="operations", public=True, status=(200, 503), access=access(200))
async def health(request: web.Request) -> Reply[HealthReport]:
    """Whether this node and the services it needs are healthy (503 when one is not)."""
    healthy, services = await request.app[HEALTH].report()
    status = "healthy" if healthy else "unhealthy"
    code = 200 if healthy else 503
    if not await _may_see_details(request):
        return Reply(HealthReport(status=status), status=code)
    body = HealthReport(
        status=status,
        timestamp=dt.datetime.now(dt.UTC).isoformat(),
        version=__version__,
        node=request.app[SETTINGS].node_id,
        services=services,
    )
    return Reply(body, status=code)


@routes.get("/metrics")
@operation(
    tag="operations",
    public=True,
    errors=(401, 404),
    raw={200: Raw("text/plain", "Prometheus text exposition format")},
    # with METRICS_TOKEN set (as it should be in production) only its holder reads metrics
    access=access(401),
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this node (METRICS_TOKEN as a bearer token, when one is set)."""
    settings = request.app[SETTINGS]
    private = request.app.get(METRICS_LISTENER, False)
    if settings.metrics_address is not None and not private:
        raise web.HTTPNotFound()
    if settings.metrics_token and not private and not _metrics_token_given(request):
        raise Unauthorized("/metrics needs the metrics token", code="metrics_token_required")
    await request.app[METRICS].refresh()
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def metrics_app(main: web.Application) -> web.Application:
    """The small application METRICS_ADDRESS serves: /metrics and the full /health of `main`,
    with nothing else and no token (the address itself is the protection)."""
    app = web.Application()
    app[SETTINGS] = main[SETTINGS]
    app[METRICS] = main[METRICS]
    app[HEALTH] = main[HEALTH]
    app[METRICS_LISTENER] = True
    app.router.add_routes(routes)
    return app
