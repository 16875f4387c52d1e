"""/api/openapi.json and /api/docs: the contract, as a document and as a page people read.
Both are built once per application from its router (routes do not change after start-up)."""

from __future__ import annotations

from aiohttp import web

from .contract import Raw, access, operation
from .openapi import API_DOCUMENT

routes = web.RouteTableDef()


@routes.get("/api/openapi.json")
@operation(
    tag="documentation",
    public=True,
    raw={200: Raw("application/json", "the OpenAPI 3.1 document", {"type": "object"})},
    access=access(200),
)
async def openapi_json(request: web.Request) -> web.Response:
    """This API as an OpenAPI 3.1 document."""
    body = request.app[API_DOCUMENT].json(request.app.router)
    return web.Response(body=body, content_type="application/json")


@routes.get("/api/docs")
@operation(
    tag="documentation",
    public=True,
    raw={200: Raw("text/html", "the API reference as a web page")},
    access=access(200),
)
async def docs_page(request: web.Request) -> web.Response:
    """This API as a web page: every operation, who may call it, what it takes and answers."""
    body = request.app[API_DOCUMENT].html(request.app.router)
    return web.Response(
        body=body,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
