"""/api/pods: study pods, members, invitations, analytics."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..services.pods import InviteRequest, JoinRequest, MemberUpdate, PodCreate, PodQuery, PodUpdate
from .keys import PODS
from .middleware import principal
from .render import json_response, no_content, path_id, read_body, read_query

routes = web.RouteTableDef()


class _MemberPaging(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = 50
    offset: int = 0


@routes.get("/api/pods")
async def list_pods(request: web.Request) -> web.Response:
    query = read_query(request, PodQuery)
    return json_response(await request.app[PODS].list(principal(request), query))


@routes.post("/api/pods")
async def create_pod(request: web.Request) -> web.Response:
    body = await read_body(request, PodCreate)
    return json_response(await request.app[PODS].create(principal(request), body), status=201)


@routes.get("/api/pods/{podId}")
async def get_pod(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    return json_response(await request.app[PODS].get(principal(request), pod_id))


@routes.put("/api/pods/{podId}")
async def update_pod(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    body = await read_body(request, PodUpdate)
    return json_response(await request.app[PODS].update(principal(request), pod_id, body))


@routes.delete("/api/pods/{podId}")
async def delete_pod(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    await request.app[PODS].delete(principal(request), pod_id)
    return no_content()


@routes.get("/api/pods/{podId}/members")
async def list_members(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    page = read_query(request, _MemberPaging)
    result = await request.app[PODS].members(principal(request), pod_id, page.limit, page.offset)
    return json_response(result)


@routes.post("/api/pods/{podId}/join")
async def join_pod(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    body = await read_body(request, JoinRequest, allow_empty=True)
    return json_response(await request.app[PODS].join(principal(request), pod_id, body))


@routes.delete("/api/pods/{podId}/leave")
async def leave_pod(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    await request.app[PODS].leave(principal(request), pod_id)
    return no_content()


@routes.post("/api/pods/{podId}/invite")
async def invite(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    body = await read_body(request, InviteRequest)
    invitation, created = await request.app[PODS].invite(principal(request), pod_id, body)
    return json_response(invitation, status=201 if created else 200)


@routes.put("/api/pods/{podId}/members/{userId}")
async def set_member_role(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "member")
    body = await read_body(request, MemberUpdate)
    return json_response(
        await request.app[PODS].set_role(principal(request), pod_id, user_id, body)
    )


@routes.delete("/api/pods/{podId}/members/{userId}")
async def remove_member(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "member")
    await request.app[PODS].remove_member(principal(request), pod_id, user_id)
    return no_content()


@routes.post("/api/pods/{podId}/members/{userId}/ban")
async def ban_member(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "user")
    await request.app[PODS].ban_member(principal(request), pod_id, user_id)
    return no_content()


@routes.delete("/api/pods/{podId}/members/{userId}/ban")
async def unban_member(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    user_id = path_id(request, "userId", "user")
    await request.app[PODS].unban_member(principal(request), pod_id, user_id)
    return no_content()


@routes.get("/api/pods/{podId}/analytics")
async def pod_analytics(request: web.Request) -> web.Response:
    pod_id = path_id(request, "podId", "pod")
    return json_response(await request.app[PODS].analytics(principal(request), pod_id))
