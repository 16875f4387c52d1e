"""/api/auth: accounts and login sessions."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..accounts.auth import (
    AUTH,
    AuthResult,
    ClientInfo,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    SessionView,
    TokenPair,
)
from ..accounts.users import USERS, ProfileUpdate, PublicProfile, UserProfile
from ..pods.service import PODS
from .contract import access, operation, signed_in
from .middleware import client_address, principal
from .render import path_id

routes = web.RouteTableDef()


class LoginSessionList(msgspec.Struct):
    sessions: list[SessionView]


def client_info(request: web.Request) -> ClientInfo:
    return ClientInfo(ip=client_address(request), user_agent=request.headers.get("User-Agent"))


@routes.post("/api/auth/register")
@operation(tag="auth", public=True, status=201, errors=(409, 429), access=access(201))
async def register(request: web.Request, body: RegisterRequest) -> AuthResult:
    """Create an account and sign in; a verification link is emailed.

    With the `invitationCode` of a pod invitation sent to this address, the account joins the
    pod (`joinedPodId`; null when the invitation cannot be used: the account exists anyway)."""
    auth = request.app[AUTH]
    result = await auth.register(body, client_info(request))
    if body.invitation_code:
        newcomer = await auth.session_principal(result.session_id, result.user.id)
        result.joined_pod_id = await request.app[PODS].join_with_invitation(
            newcomer, body.invitation_code
        )
    return result


@routes.post("/api/auth/login")
@operation(tag="auth", public=True, errors=(401, 403, 429), access=access(200))
async def login(request: web.Request, body: LoginRequest) -> AuthResult:
    """Sign in with email and password."""
    return await request.app[AUTH].login(body, client_info(request))


@routes.post("/api/auth/refresh")
@operation(tag="auth", public=True, errors=(401,), access=access(200))
async def refresh(request: web.Request, body: RefreshRequest) -> TokenPair:
    """Swap a refresh token for a new access and refresh token."""
    return await request.app[AUTH].refresh(body.refresh_token)


@routes.post("/api/auth/logout")
@operation(tag="auth", access=signed_in(204))
async def logout(request: web.Request) -> None:
    """End the caller's login session."""
    await request.app[AUTH].logout(principal(request))


@routes.get("/api/auth/sessions")
@operation(tag="auth", access=signed_in(200))
async def list_sessions(request: web.Request) -> LoginSessionList:
    """The caller's login sessions (devices)."""
    return LoginSessionList(sessions=await request.app[AUTH].list_sessions(principal(request)))


@routes.delete("/api/auth/sessions/{sessionId}")
@operation(tag="auth", access=signed_in(404, member=204))
async def delete_session(request: web.Request) -> None:
    """End one of the caller's login sessions."""
    session_id = path_id(request, "sessionId", "session")
    await request.app[AUTH].delete_session(principal(request), session_id)


@routes.get("/api/auth/me")
@operation(tag="auth", access=signed_in(200))
async def me(request: web.Request) -> UserProfile:
    """The caller's own profile."""
    return await request.app[USERS].me(principal(request).user_id)


@routes.patch("/api/auth/me")
@operation(tag="auth", errors=(409,), access=signed_in(200))
async def update_me(request: web.Request, body: ProfileUpdate) -> UserProfile:
    """Change the caller's own profile."""
    return await request.app[USERS].update_me(principal(request).user_id, body)


@routes.get("/api/users/{id}")
@operation(tag="auth", access=signed_in(200))
async def public_profile(request: web.Request) -> PublicProfile:
    """Another user's public profile."""
    user_id = path_id(request, "id", "user")
    return await request.app[USERS].public_profile(principal(request).user_id, user_id)
