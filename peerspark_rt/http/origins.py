"""Which browser origins may act on this server: the ones in ALLOWED_ORIGINS, and the server's
own (the web client it serves at /app talks to the node that served it)."""

from __future__ import annotations

from aiohttp import web

from ..config import SETTINGS
from .middleware import served_over_tls


def own_origin(request: web.Request) -> str:
    """The origin a page this node served has, as the browser names it (the Host it asked
    for; behind a trusted proxy, the scheme the proxy says the browser used)."""
    scheme = "https" if served_over_tls(request) else "http"
    return f"{scheme}://{request.host}"


def origin_allowed(request: web.Request, origin: str | None) -> bool:
    """A request without Origin (not from a browser page) or from an allowed one. A page
    elsewhere cannot make a browser send our own host as its Origin."""
    if origin is None:
        return True
    allowed = request.app[SETTINGS].allowed_origins
    origin = origin.rstrip("/")
    return "*" in allowed or origin in allowed or origin == own_origin(request)
