"""/api/feed, /api/posts, /api/comments: the social feed, posts, comments and interactions."""

from __future__ import annotations

from aiohttp import web

from ..infra.readcache import Encoded
from ..social.comments import (
    COMMENTS,
    Comment,
    CommentCreate,
    CommentInteractionRequest,
    CommentInteractionResult,
    CommentPage,
    CommentQuery,
)
from ..social.feed import (
    POSTS,
    AcceptAnswer,
    AcceptedAnswer,
    FeedPage,
    FeedQuery,
    InteractionRequest,
    InteractionResult,
    Post,
    PostCreate,
    PostUpdate,
)
from .contract import operation, signed_in
from .middleware import cached_read, principal, read_generation
from .render import path_id

routes = web.RouteTableDef()

# The reference post is the owner's, in the private pod; the reference comment on it is the
# member's. Non-members see neither (404).
_IN_POD = {"outsider": 404, "banned": 404, "admin": 404}


@routes.get("/api/feed")
@cached_read
@operation(tag="feed", errors=(404,), access=signed_in(200))
async def feed(request: web.Request, query: FeedQuery) -> Encoded[FeedPage]:
    """One of the feeds (home, pod, following, trending), newest first."""
    return await request.app[POSTS].feed(
        principal(request), query, generation=read_generation(request)
    )


@routes.post("/api/posts")
@operation(tag="feed", status=201, errors=(403, 404, 429), access=signed_in(201, **_IN_POD))
async def create_post(request: web.Request, body: PostCreate) -> Post:
    """Publish a post (in a pod the caller belongs to, or on their profile)."""
    return await request.app[POSTS].create(principal(request), body)


@routes.get("/api/posts/{postId}")
@operation(tag="feed", access=signed_in(200, **_IN_POD))
async def get_post(request: web.Request) -> Post:
    """One post the caller may read."""
    return await request.app[POSTS].get(principal(request), path_id(request, "postId", "post"))


@routes.put("/api/posts/{postId}")
@operation(tag="feed", errors=(403, 409), access=signed_in(403, owner=200, **_IN_POD))
async def update_post(request: web.Request, body: PostUpdate) -> Post:
    """Edit a post (its author)."""
    post_id = path_id(request, "postId", "post")
    return await request.app[POSTS].update(principal(request), post_id, body)


@routes.delete("/api/posts/{postId}")
@operation(tag="feed", errors=(403,), access=signed_in(403, moderator=204, owner=204, **_IN_POD))
async def delete_post(request: web.Request) -> None:
    """Delete a post (its author, the pod's moderators, platform moderators)."""
    await request.app[POSTS].delete(principal(request), path_id(request, "postId", "post"))


@routes.post("/api/posts/{postId}/interactions")
@operation(tag="feed", errors=(403, 409), access=signed_in(200, **_IN_POD))
async def interact(request: web.Request, body: InteractionRequest) -> InteractionResult:
    """Like, bookmark or share a post."""
    post_id = path_id(request, "postId", "post")
    return await request.app[POSTS].interact(principal(request), post_id, body)


@routes.get("/api/posts/{postId}/comments")
@operation(tag="feed", access=signed_in(200, **_IN_POD))
async def list_comments(request: web.Request, query: CommentQuery) -> CommentPage:
    """A post's comment tree, depth-first, paginated."""
    post_id = path_id(request, "postId", "post")
    return await request.app[COMMENTS].list(principal(request), post_id, query)


@routes.post("/api/posts/{postId}/comments")
@operation(tag="feed", status=201, errors=(403, 409, 429), access=signed_in(201, **_IN_POD))
async def create_comment(request: web.Request, body: CommentCreate) -> Comment:
    """Comment on a post, or reply to a comment."""
    post_id = path_id(request, "postId", "post")
    return await request.app[COMMENTS].create(principal(request), post_id, body)


@routes.post("/api/posts/{postId}/accepted-answer")
@operation(tag="feed", errors=(403, 409), access=signed_in(403, owner=409, **_IN_POD))
async def accept_answer(request: web.Request, body: AcceptAnswer) -> AcceptedAnswer:
    """The author of a question accepts a comment on it as its answer."""
    post_id = path_id(request, "postId", "post")
    return await request.app[COMMENTS].accept_answer(principal(request), post_id, body)


@routes.post("/api/comments/{commentId}/interactions")
@operation(tag="feed", errors=(403, 409), access=signed_in(200, **_IN_POD))
async def comment_interact(
    request: web.Request, body: CommentInteractionRequest
) -> CommentInteractionResult:
    """Like a comment."""
    comment_id = path_id(request, "commentId", "comment")
    return await request.app[COMMENTS].interact(principal(request), comment_id, body)


@routes.delete("/api/comments/{commentId}")
@operation(
    tag="feed",
    errors=(403,),
    access=signed_in(403, member=204, moderator=204, owner=204, **_IN_POD),
)
async def delete_comment(request: web.Request) -> None:
    """Delete a comment (its author, the pod's moderators, platform moderators)."""
    comment_id = path_id(request, "commentId", "comment")
    await request.app[COMMENTS].delete(principal(request), comment_id)
