"""/api/auth/oauth: sign in with Google, GitHub or Discord (see accounts/oauth.py)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..accounts.auth import AuthResult
from ..accounts.oauth import OAUTH, AuthorizationUrl, SignInMethods, TicketExchange
from ..config import SETTINGS
from .auth import client_info
from .contract import Raw, access, operation, signed_in
from .middleware import principal, served_over_tls
from .render import json_response

routes = web.RouteTableDef()

STATE_COOKIE = "ps_oauth_state"
COOKIE_PATH = "/api/auth/oauth/"


class CallbackQuery(msgspec.Struct, forbid_unknown_fields=False):
    code: str | None = None
    state: str | None = None
    error: str | None = None
    error_description: str | None = None
    scope: str | None = None
    authuser: str | None = None
    prompt: str | None = None
    hd: str | None = None


def _origin(request: web.Request) -> str:
    settings = request.app[SETTINGS]
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return str(request.url.origin())


def _redirect_uri(request: web.Request, provider: str) -> str:
    return f"{_origin(request)}/api/auth/oauth/{provider}/callback"


def _with_state_cookie(request: web.Request, response: web.StreamResponse, state: str) -> None:
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=request.app[SETTINGS].oauth_state_ttl,
        path=COOKIE_PATH,
        httponly=True,
        secure=served_over_tls(request),
        samesite="Lax",  # the provider sends the browser back with a top-level GET
    )


@routes.get("/api/auth/oauth/{provider}/start")
@operation(
    tag="auth",
    public=True,
    status=302,
    errors=(404, 502),
    raw={302: Raw("text/plain", "to the provider's sign-in page (sets the state cookie)")},
    access=access(302),
)
async def start(request: web.Request) -> web.Response:
    """Start signing in with a provider: redirects the browser to it (PKCE, state)."""
    provider = request.match_info["provider"]
    url, state = await request.app[OAUTH].start(provider, _redirect_uri(request, provider))
    response = web.Response(status=302, headers={"Location": url}, text="")
    _with_state_cookie(request, response, state)
    return response


@routes.post("/api/auth/oauth/{provider}/link")
@operation(tag="auth", errors=(404, 502), access=signed_in(200))
async def link(request: web.Request) -> AuthorizationUrl | web.Response:
    """Link a provider to the signed-in account: open the returned URL in this browser."""
    provider = request.match_info["provider"]
    url, state = await request.app[OAUTH].start(
        provider, _redirect_uri(request, provider), link_user=principal(request)
    )
    response = json_response(AuthorizationUrl(url))
    _with_state_cookie(request, response, state)
    return response


@routes.get("/api/auth/oauth/{provider}/callback")
@operation(
    tag="auth",
    public=True,
    status=302,
    errors=(400, 404, 409, 502),
    raw={302: Raw("text/plain", "to OAUTH_COMPLETE_URL with #ticket=... (or #linked=...)")},
    # the matrix brings no state: refused
    access=access(400),
)
async def callback(request: web.Request, query: CallbackQuery) -> web.Response:
    """Where the provider sends the browser back; continues to the web page with a one-time
    ticket (in the URL fragment) that POST /api/auth/oauth/complete exchanges for tokens."""
    provider = request.match_info["provider"]
    oauth = request.app[OAUTH]
    oauth.provider(provider)
    outcome, _user = await oauth.callback(
        provider,
        _redirect_uri(request, provider),
        code=query.code,
        state=query.state,
        error=query.error,
        browser_state=request.cookies.get(STATE_COOKIE),
        client_info=client_info(request),
    )
    settings = request.app[SETTINGS]
    complete = settings.oauth_complete_url or f"{_origin(request)}/auth/complete"
    fragment = f"linked={provider}" if outcome == "linked" else f"ticket={outcome}"
    response = web.Response(status=302, headers={"Location": f"{complete}#{fragment}"}, text="")
    response.del_cookie(STATE_COOKIE, path=COOKIE_PATH)
    return response


@routes.post("/api/auth/oauth/complete")
@operation(tag="auth", public=True, errors=(400, 403), access=access(400))
async def complete(request: web.Request, body: TicketExchange) -> AuthResult:
    """Exchange the callback's one-time ticket for an access and refresh token.

    (The matrix sends a ticket that is not valid: tickets are single-use.)"""
    return await request.app[OAUTH].complete(body.ticket, client_info(request))


@routes.get("/api/auth/oauth/accounts")
@operation(tag="auth", access=signed_in(200))
async def accounts(request: web.Request) -> SignInMethods:
    """How the caller can sign in: password or not, linked providers, providers available."""
    return await request.app[OAUTH].methods(principal(request))


@routes.delete("/api/auth/oauth/{provider}")
@operation(
    tag="auth",
    errors=(409,),
    # the reference accounts have no provider linked
    access=signed_in(404),
)
async def unlink(request: web.Request) -> None:
    """Unlink a provider (409 when it is the account's only way to sign in)."""
    await request.app[OAUTH].unlink(principal(request), request.match_info["provider"])
