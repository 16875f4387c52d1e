"""/api/web: the web page's login by cookie (see web_session.py), and the short-lived access
token the page opens its websocket with (browsers cannot send a cookie's worth of trust to
/ws without it being forgeable cross-site, so the socket keeps its token)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..accounts.auth import AUTH, LoginRequest
from ..accounts.users import USERS, UserProfile
from ..errors import Forbidden
from .auth import client_info
from .contract import access, operation, signed_in
from .middleware import principal
from .origins import origin_allowed
from .render import json_response, no_content
from .web_session import CSRF_TOKEN, forget, new_csrf_token, sign_in

routes = web.RouteTableDef()

# Seconds a socket token lives: enough to open the socket (which then lives as long as the
# login session); the page asks for a new one on every reconnect.
SOCKET_TOKEN_TTL = 60


class WebSession(msgspec.Struct, rename="camel", omit_defaults=True):
    """Who the page is signed in as, and the CSRF token its writes must carry (absent for a
    caller that did not sign in by cookie)."""

    user: UserProfile
    csrf_token: str | msgspec.UnsetType = msgspec.UNSET


class SocketToken(msgspec.Struct, rename="camel"):
    access_token: str
    expires_in: int


@routes.post("/api/web/login")
@operation(tag="web", public=True, errors=(401, 403, 429), access=access(200))
async def web_login(request: web.Request, body: LoginRequest) -> WebSession | web.Response:
    """Sign the web page in: sets the login cookie and answers the CSRF token.

    The cookie is encrypted, HttpOnly and SameSite=Strict; the answer carries no token. A
    browser page from an origin that is not allowed gets 403 (no logging a visitor in as
    someone else from another site)."""
    if not origin_allowed(request, request.headers.get("Origin")):
        raise Forbidden("this origin may not sign in here", code="origin_not_allowed")
    auth = request.app[AUTH]
    result = await auth.login(body, client_info(request))
    caller = await auth.session_principal(result.session_id, result.user.id)
    csrf = new_csrf_token()
    response = json_response(WebSession(user=result.user, csrf_token=csrf))
    await sign_in(
        request,
        response,
        caller,
        csrf=csrf,
        remember_me=body.remember_me,
        ttl=auth.settings.remember_me_ttl,
    )
    return response


@routes.get("/api/web/session")
@operation(tag="web", access=signed_in(200))
async def web_session(request: web.Request) -> WebSession:
    """Who the page is signed in as, with the CSRF token for its writes."""
    caller = principal(request)
    user = await request.app[USERS].me(caller.user_id)
    csrf = request.get(CSRF_TOKEN)
    return WebSession(user=user, csrf_token=csrf if csrf is not None else msgspec.UNSET)


@routes.post("/api/web/token")
@operation(tag="web", access=signed_in(200))
async def socket_token(request: web.Request) -> SocketToken:
    """A short-lived access token for the caller's login session, to open /ws with.

    Signed in by cookie, this is a write: it needs the X-CSRF-Token header."""
    token = request.app[AUTH].short_access_token(principal(request), SOCKET_TOKEN_TTL)
    return SocketToken(access_token=token, expires_in=SOCKET_TOKEN_TTL)


@routes.post("/api/web/logout")
@operation(tag="web", access=signed_in(204))
async def web_logout(request: web.Request) -> web.Response:
    """End the caller's login session and remove the page's cookie."""
    await request.app[AUTH].logout(principal(request))
    return forget(request, no_content())
