"""Middlewares, outermost first: request context (id, metrics, access log), CORS, errors,
authentication."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web

from .. import logs
from ..accounts.auth import AUTH, Principal
from ..config import SETTINGS
from ..errors import AppError, Invalid, RateLimited, RequestTimeout, Unauthorized
from ..infra.validation import OUT_OF_RANGE
from .contract import ErrorBody, ErrorResponse
from .inflight import REQUESTS
from .metrics import METRICS
from .render import json_response
from .web_session import cookie_principal, forget

log = logging.getLogger("peerspark_rt.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Callable[..., Any])

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def public(handler: F) -> F:
    """Mark a handler under /api/ as reachable without an access token."""
    handler.__dict__["public"] = True
    return handler


def cached_read(handler: F) -> F:
    """Mark a handler that reads through the read cache before it writes anything: its
    session check also reads the cache's generation (one round trip fewer per cached hit)."""
    handler.__dict__["cached_read"] = True
    return handler


def principal(request: web.Request) -> Principal:
    """The authenticated caller (the auth middleware has already checked the token)."""
    return request[PRINCIPAL]


def read_generation(request: web.Request) -> int | None:
    """The read cache's generation read with the caller's session check, before the handler
    ran (a `cached_read` handler signed in by token); None: the cache reads it itself."""
    return request.get(READ_GENERATION)


def error_response(error: AppError, request_id: str | None = None) -> web.Response:
    fields = error.to_dict()
    body = ErrorBody(
        code=error.code,
        message=error.message,
        details=fields.get("details", msgspec.UNSET),
        held=fields.get("held", msgspec.UNSET),
        request_id=request_id or "",
    )
    headers: dict[str, str] = dict(error.headers)
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="peerspark"'
    response = json_response(ErrorResponse(error=body), status=error.status, headers=headers)
    if isinstance(error, RequestTimeout):
        response.force_close()  # the rest of that body is not worth waiting for
    return response


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    rid = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = rid
    token = logs.request_id.set(rid)
    user_token = logs.user_id.set(None)  # set once the caller is known (authenticate, /ws)
    started = time.perf_counter()
    status = 500
    in_flight = request.app.get(REQUESTS)
    if in_flight is not None:
        in_flight.started()
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
            if in_flight is not None and in_flight.draining:
                response.force_close()  # the node is stopping: the next request goes elsewhere
        return response
    finally:
        if in_flight is not None:
            in_flight.finished()
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        request.app[METRICS].request_done(request.method, route, status, elapsed)
        if log.isEnabledFor(logging.INFO):  # (its fields cost more than the call)
            log.info(
                "%s %s -> %d in %.1f ms",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                },
            )
        logs.user_id.reset(user_token)
        logs.request_id.reset(token)


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].allowed_origins
    ok = origin is not None and ("*" in allowed or origin.rstrip("/") in allowed)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204 if ok else 403)
        if ok:
            if origin is None:
                raise RuntimeError("origin is missing")
            response.headers.update(
                {
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Credentials": "true",
                    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": request.headers.get(
                        "Access-Control-Request-Headers", "Authorization, Content-Type"
                    ),
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                }
            )
        return response
    response = await handler(request)
    if ok and not response.prepared:
        response.headers.update(cors_headers(request))
    return response


def cors_headers(request: web.Request) -> dict[str, str]:
    """The CORS headers of a response to an allowed origin (none otherwise). Handlers that
    stream add them themselves, since a streamed response's headers go out before the
    middleware sees it."""
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].allowed_origins
    if origin is None or not ("*" in allowed or origin.rstrip("/") in allowed):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": (
            "X-Request-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, "
            "X-AI-Tokens-Limit, X-AI-Tokens-Remaining, X-AI-Tokens-Reset"
        ),
        "Vary": "Origin",
    }


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        return error_response(exc, request.get(REQUEST_ID))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = (
            exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        )
        error = AppError(message, code=code)
        error.status = exc.status
        response = error_response(error, request.get(REQUEST_ID))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except asyncpg.DataError as exc:
        # Input that slipped past validation (e.g. a value out of a column's range).
        log.warning("data error in %s %s: %s", request.method, request.path, exc)
        return error_response(Invalid("body", OUT_OF_RANGE), request.get(REQUEST_ID))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(AppError("internal server error"), request.get(REQUEST_ID))


def client_address(request: web.Request) -> str | None:
    """The client's address: the peer's, or behind trusted proxies (TRUST_PROXY_HEADERS) the
    one the outermost trusted proxy appended to X-Forwarded-For — TRUSTED_PROXY_HOPS entries
    from the right. Entries left of it are whatever the client wrote and count for nothing."""
    settings = request.app[SETTINGS]
    if not settings.trust_proxy_headers:
        return request.remote
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    if len(hops) < settings.trusted_proxy_hops:
        return request.remote
    candidate = hops[-settings.trusted_proxy_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return request.remote


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.isascii():
        # a token is ASCII; other bytes arrive as surrogates that no decoder should meet
        raise Unauthorized("token is invalid", code="invalid_token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # no such route: let it be a 404/405, not a 401
    route_handler = request.match_info.handler
    if request.path.startswith("/api/") and not getattr(route_handler, "public", False):
        token = bearer_token(request)
        if token is not None:
            if getattr(route_handler, "cached_read", False):
                caller, generation = await request.app[AUTH].authenticate_for_read(token)
                if generation is not None:
                    request[READ_GENERATION] = generation
            else:
                caller = await request.app[AUTH].authenticate(token)
            request[PRINCIPAL] = caller
            logs.user_id.set(str(caller.user_id))
            return await handler(request)
        # The web page signs in by cookie (and must send its CSRF token with writes); a
        # request with a bearer token never reaches this.
        try:
            by_cookie = await cookie_principal(request)
        except Unauthorized as exc:
            # the cookie is dead for good (unreadable, or its login ended): drop it
            return forget(request, error_response(exc, request.get(REQUEST_ID)))
        if by_cookie is None:
            raise Unauthorized("an access token is required", code="token_required")
        request[PRINCIPAL] = by_cookie
        logs.user_id.set(str(by_cookie.user_id))
    return await handler(request)


MIDDLEWARES = [request_context, cors, errors, authenticate]

HSTS = "max-age=31536000; includeSubDomains"
# Paths whose answers carry tokens or account data: never stored by a browser or a proxy.
_NO_STORE_PREFIXES = ("/api/auth/", "/api/users/")


def served_over_tls(request: web.Request) -> bool:
    """The client reached us over TLS: directly, or through a trusted proxy that says so."""
    transport = request.transport
    if transport is not None and transport.get_extra_info("sslcontext") is not None:
        return True
    if request.app[SETTINGS].trust_proxy_headers:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        return proto == "https"
    return False


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries (run by on_response_prepare, so streamed answers, file
    downloads, websocket handshakes and errors get them too): no MIME sniffing, no framing,
    no referrer, no version in Server; HSTS when served over TLS; no-store for answers that
    carry tokens or account data (and for API answers that say nothing about caching)."""
    headers = response.headers
    headers["Server"] = "PeerSpark"
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    csp = headers.get("Content-Security-Policy")
    if csp is None:
        headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    elif "frame-ancestors" not in csp:
        headers["Content-Security-Policy"] = f"{csp}; frame-ancestors 'none'"
    if served_over_tls(request):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if request.path.startswith(_NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
    elif request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")


# the application's key for what this module provides (typed app state)
PRINCIPAL = web.RequestKey("principal", Principal)
READ_GENERATION = web.RequestKey("read_generation", int)
REQUEST_ID = web.RequestKey("request_id", str)
