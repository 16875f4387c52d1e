"""/api/feed, /api/posts, /api/comments: the social feed, posts, comments and interactions."""

from __future__ import annotations

from aiohttp import web

from ..services.comments import CommentCreate, CommentInteractionRequest, CommentQuery
from ..services.feed import FeedQuery, InteractionRequest, PostCreate, PostUpdate
from .keys import COMMENTS, POSTS
from .middleware import principal
from .render import json_response, no_content, path_id, read_body, read_query

routes = web.RouteTableDef()


@routes.get("/api/feed")
async def feed(request: web.Request) -> web.Response:
    query = read_query(request, FeedQuery)
    return json_response(await request.app[POSTS].feed(principal(request), query))


@routes.post("/api/posts")
async def create_post(request: web.Request) -> web.Response:
    body = await read_body(request, PostCreate)
    return json_response(await request.app[POSTS].create(principal(request), body), status=201)


@routes.get("/api/posts/{postId}")
async def get_post(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    return json_response(await request.app[POSTS].get(principal(request), post_id))


@routes.put("/api/posts/{postId}")
async def update_post(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    body = await read_body(request, PostUpdate)
    return json_response(await request.app[POSTS].update(principal(request), post_id, body))


@routes.delete("/api/posts/{postId}")
async def delete_post(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    await request.app[POSTS].delete(principal(request), post_id)
    return no_content()


@routes.post("/api/posts/{postId}/interactions")
async def interact(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    body = await read_body(request, InteractionRequest)
    return json_response(await request.app[POSTS].interact(principal(request), post_id, body))


@routes.get("/api/posts/{postId}/comments")
async def list_comments(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    query = read_query(request, CommentQuery)
    return json_response(await request.app[COMMENTS].list(principal(request), post_id, query))


@routes.post("/api/posts/{postId}/comments")
async def create_comment(request: web.Request) -> web.Response:
    post_id = path_id(request, "postId", "post")
    body = await read_body(request, CommentCreate)
    comment = await request.app[COMMENTS].create(principal(request), post_id, body)
    return json_response(comment, status=201)


@routes.post("/api/comments/{commentId}/interactions")
async def comment_interact(request: web.Request) -> web.Response:
    comment_id = path_id(request, "commentId", "comment")
    body = await read_body(request, CommentInteractionRequest)
    return json_response(await request.app[COMMENTS].interact(principal(request), comment_id, body))


@routes.delete("/api/comments/{commentId}")
async def delete_comment(request: web.Request) -> web.Response:
    comment_id = path_id(request, "commentId", "comment")
    await request.app[COMMENTS].delete(principal(request), comment_id)
    return no_content()
