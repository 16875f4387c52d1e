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

from aiohttp import web

from .. import __version__
from ..errors import AppError, Unauthorized
from .keys import AUTH, HEALTH, METRICS, METRICS_LISTENER, SETTINGS
from .middleware import bearer_token
from .render import json_response

routes = web.RouteTableDef()


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
async def health(request: web.Request) -> web.Response:
    healthy, services = await request.app[HEALTH].report()
    status = "healthy" if healthy else "unhealthy"
    code = 200 if healthy else 503
    if not await _may_see_details(request):
        return json_response({"status": status}, status=code)
    body = {
        "status": status,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "version": __version__,
        "node": request.app[SETTINGS].node_id,
        "services": services,
    }
    return json_response(body, status=code)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
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
