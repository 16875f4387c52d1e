"""/api/search: post search and title suggestions (resource search is GET /api/resources)."""

from __future__ import annotations

from aiohttp import web

from ..search.service import SEARCH, PostSearchQuery, PostSearchResult, Suggestions, SuggestQuery
from .contract import operation, signed_in
from .middleware import principal

routes = web.RouteTableDef()


@routes.get("/api/search/posts")
@operation(tag="search", errors=(404,), access=signed_in(200))
async def search_posts(request: web.Request, query: PostSearchQuery) -> PostSearchResult:
    """Full-text search of the posts the caller can read, ranked, with highlights."""
    return await request.app[SEARCH].posts_page(principal(request), query)


@routes.get("/api/search/suggest")
@operation(tag="search", access=signed_in(200))
async def suggest(request: web.Request, query: SuggestQuery) -> Suggestions:
    """Title suggestions for a prefix (typo tolerant)."""
    return await request.app[SEARCH].suggest(principal(request), query)
