"""The web page's login: an encrypted cookie (aiohttp-session's EncryptedCookieStorage:
Fernet, HttpOnly, SameSite=Strict, Secure in production) that names a login session, plus
the CSRF token every cookie-authenticated write must carry in `X-CSRF-Token`.

The cookie holds no token: only the login session's id, its user and the CSRF token. The
login session in the database stays the authority, so logging out (or deleting that session
from another device) ends the cookie too. Requests with a bearer token never look at the
cookie, so the API's rules are the same as before for every client that is not the page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import TypeVar

from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from ..accounts.auth import AUTH, Principal
from ..config import Settings
from ..errors import Forbidden, Unauthorized

COOKIE_NAME = "peerspark_web"
CSRF_HEADER = "X-CSRF-Token"
# Methods that change nothing (every GET of this API is free of side effects).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

R = TypeVar("R", bound=web.StreamResponse)

COOKIES = web.AppKey("web_cookies", EncryptedCookieStorage)
CSRF_TOKEN = web.RequestKey("csrf_token", str)


def cookie_storage(settings: Settings) -> EncryptedCookieStorage:
    """The cookie jar of the web page. Its key is derived from JWT_SECRET (every node has the
    same, so any node reads a cookie another wrote; rotating the secret logs pages out)."""
    key = hashlib.sha256(b"peerspark web cookie\x00" + settings.jwt_secret.encode()).digest()
    return EncryptedCookieStorage(
        key,
        cookie_name=COOKIE_NAME,
        # the longest a cookie is ever read (a remember-me login); the login session in the
        # database usually ends it first
        max_age=settings.remember_me_ttl,
        path="/",
        secure=settings.env == "production",
        httponly=True,
        samesite="Strict",
    )


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


async def sign_in(
    request: web.Request,
    response: web.StreamResponse,
    principal: Principal,
    *,
    csrf: str,
    remember_me: bool,
    ttl: int,
) -> None:
    """Write the cookie for `principal`'s login session, with the CSRF token the page must
    send with its writes, onto `response`."""
    storage = request.app[COOKIES]
    session: Session = await storage.new_session()
    session["uid"] = str(principal.user_id)
    session["sid"] = str(principal.session_id)
    session["csrf"] = csrf
    # without "remember me" the cookie ends with the browser session
    session.max_age = ttl if remember_me else None
    await storage.save_session(request, response, session)


def forget(request: web.Request, response: R) -> R:
    """Remove the page's cookie with `response`."""
    response.del_cookie(COOKIE_NAME, path="/")
    return response


async def cookie_principal(request: web.Request) -> Principal | None:
    """The caller the page's cookie names (None when the request carries no cookie). Writes
    need the cookie's CSRF token in X-CSRF-Token (403 otherwise). A cookie that cannot be
    read, or whose login session ended, is a 401."""
    if COOKIES not in request.app or COOKIE_NAME not in request.cookies:
        return None
    session = await request.app[COOKIES].load_session(request)
    try:
        user_id = uuid.UUID(str(session["uid"]))
        session_id = uuid.UUID(str(session["sid"]))
        csrf = str(session["csrf"])
    except (KeyError, ValueError):
        raise Unauthorized(
            "the login cookie is not valid; log in again", code="cookie_invalid"
        ) from None
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not given.isascii() or not hmac.compare_digest(given.encode(), csrf.encode()):
            raise Forbidden(
                f"a write signed in by cookie needs the {CSRF_HEADER} header "
                "(GET /api/web/session gives it)",
                code="csrf_token_invalid",
            )
    principal = await request.app[AUTH].session_principal(session_id, user_id)
    request[CSRF_TOKEN] = csrf
    return principal
