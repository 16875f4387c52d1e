"""/api/pods: study pods, members, invitations, analytics."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..pods.service import (
    PODS,
    Invitation,
    InviteRequest,
    JoinRequest,
    MemberPage,
    Membership,
    MemberUpdate,
    Pod,
    PodAnalytics,
    PodAnalyticsQuery,
    PodCreate,
    PodMember,
    PodPage,
    PodQuery,
    PodUpdate,
)
from .contract import Reply, operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()


class MemberPaging(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = 50
    offset: int = 0


@routes.get("/api/pods")
@operation(tag="pods", access=signed_in(200))
async def list_pods(request: web.Request, query: PodQuery) -> PodPage:
    """Pods the caller can see (public ones, and private ones they belong to)."""
    return await request.app[PODS].list(principal(request), query)


@routes.post("/api/pods")
@operation(tag="pods", status=201, access=signed_in(201))
async def create_pod(request: web.Request, body: PodCreate) -> Pod:
    """Create a pod; the caller becomes its owner."""
    return await request.app[PODS].create(principal(request), body)


@routes.get("/api/pods/{podId}")
@operation(tag="pods", access=signed_in(200, outsider=404, banned=404, admin=404))
async def get_pod(request: web.Request) -> Pod:
    """One pod (private pods are 404 to non-members)."""
    return await request.app[PODS].get(principal(request), path_id(request, "podId", "pod"))


@routes.put("/api/pods/{podId}")
@operation(
    tag="pods",
    errors=(403,),
    access=signed_in(403, outsider=404, banned=404, owner=200, admin=404),
)
async def update_pod(request: web.Request, body: PodUpdate) -> Pod:
    """Change a pod's fields (owner and pod admins)."""
    pod_id = path_id(request, "podId", "pod")
    return await request.app[PODS].update(principal(request), pod_id, body)


@routes.delete("/api/pods/{podId}")
@operation(
    tag="pods",
    errors=(403,),
    access=signed_in(403, outsider=404, banned=404, owner=204, admin=404),
)
async def delete_pod(request: web.Request) -> None:
    """Delete a pod (its owner only)."""
    await request.app[PODS].delete(principal(request), path_id(request, "podId", "pod"))


@routes.get("/api/pods/{podId}/members")
@operation(tag="pods", errors=(403,), access=signed_in(200, outsider=404, banned=404, admin=404))
async def list_members(request: web.Request, query: MemberPaging) -> MemberPage:
    """The pod's active members."""
    pod_id = path_id(request, "podId", "pod")
    return await request.app[PODS].members(principal(request), pod_id, query.limit, query.offset)


@routes.post("/api/pods/{podId}/join")
@operation(
    tag="pods",
    empty_body=True,
    errors=(403, 409),
    access=signed_in(200, outsider=404, banned=403, admin=404),
)
async def join_pod(request: web.Request, body: JoinRequest) -> Membership:
    """Join a pod (a private pod needs an invitation code or a live invitation)."""
    pod_id = path_id(request, "podId", "pod")
    return await request.app[PODS].join(principal(request), pod_id, body)


@routes.delete("/api/pods/{podId}/leave")
@operation(
    tag="pods",
    errors=(409,),
    access=signed_in(204, outsider=404, banned=404, owner=409, admin=404),
)
async def leave_pod(request: web.Request) -> None:
    """Leave a pod (the owner must transfer ownership first)."""
    await request.app[PODS].leave(principal(request), path_id(request, "podId", "pod"))


@routes.post("/api/pods/{podId}/invite")
@operation(
    tag="pods",
    status=(201, 200),
    errors=(403, 409),
    access=signed_in(403, outsider=404, banned=404, owner=201, admin=404),
)
async def invite(request: web.Request, body: InviteRequest) -> Reply[Invitation]:
    """Invite a user by email or id (owner and pod admins); 200 when already invited."""
    pod_id = path_id(request, "podId", "pod")
    invitation, created = await request.app[PODS].invite(principal(request), pod_id, body)
    return Reply(invitation, status=201 if created else 200)


@routes.put("/api/pods/{podId}/members/{userId}")
@operation(
    tag="pods",
    errors=(403, 409),
    # the reference target is the member: changing one's own role is refused (409)
    access=signed_in(403, outsider=404, member=409, banned=404, owner=200, admin=404),
)
async def set_member_role(request: web.Request, body: MemberUpdate) -> PodMember:
    """Change a member's role (pod admins and up; ownership moves only from the owner)."""
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "member")
    return await request.app[PODS].set_role(principal(request), pod_id, user_id, body)


@routes.delete("/api/pods/{podId}/members/{userId}")
@operation(
    tag="pods",
    errors=(403, 409),
    access=signed_in(403, outsider=404, banned=404, moderator=204, owner=204, admin=404),
)
async def remove_member(request: web.Request) -> None:
    """Remove a member ranked below the caller (pod moderators and up)."""
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "member")
    await request.app[PODS].remove_member(principal(request), pod_id, user_id)


@routes.post("/api/pods/{podId}/members/{userId}/ban")
@operation(
    tag="pods",
    errors=(403, 409),
    access=signed_in(403, outsider=404, banned=404, moderator=204, owner=204, admin=404),
)
async def ban_member(request: web.Request) -> None:
    """Ban a user from the pod (pod moderators and up); they cannot rejoin."""
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "user")
    await request.app[PODS].ban_member(principal(request), pod_id, user_id)


@routes.delete("/api/pods/{podId}/members/{userId}/ban")
@operation(
    tag="pods",
    errors=(403, 409),
    access=signed_in(403, outsider=404, banned=404, moderator=204, owner=204, admin=404),
)
async def unban_member(request: web.Request) -> None:
    """Lift a ban (pod moderators and up)."""
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "user")
    await request.app[PODS].unban_member(principal(request), pod_id, user_id)


@routes.get("/api/pods/{podId}/analytics")
@operation(tag="pods", errors=(403,), access=signed_in(200, outsider=404, banned=404, admin=404))
async def pod_analytics(request: web.Request, query: PodAnalyticsQuery) -> PodAnalytics:
    """Activity figures of a pod, for its members (active in the last `days`, default 7)."""
    pod_id = path_id(request, "podId", "pod")
    return await request.app[PODS].analytics(principal(request), pod_id, query)
