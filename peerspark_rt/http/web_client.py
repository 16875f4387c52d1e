"""/app: the web client, served from web/ at the top of the project (plain ES modules, no
build step). The page signs in by cookie (/api/web) and opens /ws with a short-lived token."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from ..config import project_file
from ..errors import NotFound
from .contract import Raw, access, operation

routes = web.RouteTableDef()

WEB_DIR = project_file("web")
_MODULE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# Everything the page loads comes from this node; its only connections are this node's API
# and socket ('self' covers ws:// and wss:// on the same host).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)


async def _file(name: str, content_type: str) -> web.Response:
    path = WEB_DIR / name
    try:
        body = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise NotFound(f"no file {name} in the web client") from None
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        # revalidated on every load, so a new release shows at once
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY},
    )


@routes.get("/app")
@operation(
    tag="web",
    public=True,
    raw={200: Raw("text/html", "the web client's page")},
    access=access(200),
)
async def app_page(request: web.Request) -> web.Response:
    """The web client: log in, pods, live study sessions, the feed, notifications."""
    return await _file("index.html", "text/html")


@routes.get("/app/app.css")
@operation(
    tag="web",
    public=True,
    raw={200: Raw("text/css", "the web client's style sheet")},
    access=access(200),
)
async def app_style(request: web.Request) -> web.Response:
    """The web client's style sheet."""
    return await _file("app.css", "text/css")


@routes.get("/app/{module}.js")
@operation(
    tag="web",
    public=True,
    errors=(404,),
    raw={200: Raw("text/javascript", "one of the web client's ES modules")},
    access=access(200),
)
async def app_module(request: web.Request) -> web.Response:
    """One of the web client's ES modules (404 for a name it does not have)."""
    name = request.match_info["module"]
    if not _MODULE.match(name):
        raise NotFound(f"no module {name} in the web client")
    return await _file(f"{name}.js", "text/javascript")
