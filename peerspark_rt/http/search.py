"""/api/search: post search and title suggestions (resource search is GET /api/resources)."""

from __future__ import annotations

from aiohttp import web

from ..services.search import PostSearchQuery, SuggestQuery
from .keys import SEARCH
from .middleware import principal
from .render import json_response, read_query

routes = web.RouteTableDef()


@routes.get("/api/search/posts")
async def search_posts(request: web.Request) -> web.Response:
    query = read_query(request, PostSearchQuery)
    return json_response(await request.app[SEARCH].posts_page(principal(request), query))


@routes.get("/api/search/suggest")
async def suggest(request: web.Request) -> web.Response:
    query = read_query(request, SuggestQuery)
    return json_response(await request.app[SEARCH].suggest(principal(request), query))
