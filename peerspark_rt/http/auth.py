"""/api/auth: accounts and login sessions."""

from __future__ import annotations

from aiohttp import web

from ..services.auth import ClientInfo, LoginRequest, RefreshRequest, RegisterRequest
from ..services.users import ProfileUpdate
from .keys import AUTH, USERS
from .middleware import client_address, principal, public
from .render import json_response, no_content, path_id, read_body

routes = web.RouteTableDef()


def client_info(request: web.Request) -> ClientInfo:
    return ClientInfo(ip=client_address(request), user_agent=request.headers.get("User-Agent"))


@routes.post("/api/auth/register")
@public
async def register(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterRequest)
    result = await request.app[AUTH].register(body, client_info(request))
    return json_response(result, status=201)


@routes.post("/api/auth/login")
@public
async def login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginRequest)
    return json_response(await request.app[AUTH].login(body, client_info(request)))


@routes.post("/api/auth/refresh")
@public
async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request, RefreshRequest)
    return json_response(await request.app[AUTH].refresh(body.refresh_token))


@routes.post("/api/auth/logout")
async def logout(request: web.Request) -> web.Response:
    await request.app[AUTH].logout(principal(request))
    return no_content()


@routes.get("/api/auth/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    sessions = await request.app[AUTH].list_sessions(principal(request))
    return json_response({"sessions": sessions})


@routes.delete("/api/auth/sessions/{sessionId}")
async def delete_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    await request.app[AUTH].delete_session(principal(request), session_id)
    return no_content()


@routes.get("/api/auth/me")
async def me(request: web.Request) -> web.Response:
    return json_response(await request.app[USERS].me(principal(request).user_id))


@routes.patch("/api/auth/me")
async def update_me(request: web.Request) -> web.Response:
    body = await read_body(request, ProfileUpdate)
    return json_response(await request.app[USERS].update_me(principal(request).user_id, body))


@routes.get("/api/users/{id}")
async def public_profile(request: web.Request) -> web.Response:
    user_id = path_id(request, "id", "user")
    return json_response(
        await request.app[USERS].public_profile(principal(request).user_id, user_id)
    )
