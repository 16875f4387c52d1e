"""/api/sessions: study sessions, participation, and the live room's history."""

from __future__ import annotations

from aiohttp import web

from ..errors import Forbidden
from ..services.sessions import (
    HistoryQuery,
    SendRequest,
    SessionCreate,
    SessionQuery,
    SessionUpdate,
)
from .keys import CHAT, SESSIONS
from .middleware import principal
from .render import json_response, no_content, path_id, read_body, read_query

routes = web.RouteTableDef()


@routes.get("/api/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    query = read_query(request, SessionQuery)
    return json_response(await request.app[SESSIONS].list_visible(principal(request), query))


@routes.post("/api/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = await read_body(request, SessionCreate)
    return json_response(await request.app[SESSIONS].create(principal(request), body), status=201)


@routes.get("/api/sessions/{sessionId}")
async def get_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    return json_response(await request.app[SESSIONS].get(principal(request), session_id))


@routes.put("/api/sessions/{sessionId}")
async def update_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    body = await read_body(request, SessionUpdate)
    return json_response(await request.app[SESSIONS].update(principal(request), session_id, body))


@routes.delete("/api/sessions/{sessionId}")
async def cancel_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    return json_response(await request.app[SESSIONS].cancel(principal(request), session_id))


@routes.post("/api/sessions/{sessionId}/join")
async def join_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    return json_response(await request.app[SESSIONS].join(principal(request), session_id))


@routes.delete("/api/sessions/{sessionId}/leave")
async def leave_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    await request.app[SESSIONS].leave(principal(request), session_id)
    return no_content()


@routes.post("/api/sessions/{sessionId}/start")
async def start_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    return json_response(await request.app[SESSIONS].start(principal(request), session_id))


@routes.post("/api/sessions/{sessionId}/end")
async def end_session(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    return json_response(await request.app[SESSIONS].end(principal(request), session_id))


@routes.get("/api/sessions/{sessionId}/participants")
async def participants(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    people = await request.app[SESSIONS].participants(principal(request), session_id)
    return json_response({"participants": people})


@routes.get("/api/sessions/{sessionId}/messages")
async def history(request: web.Request) -> web.Response:
    session_id = path_id(request, "sessionId", "session")
    query = read_query(request, HistoryQuery)
    return json_response(await request.app[SESSIONS].history(principal(request), session_id, query))


@routes.post("/api/sessions/{sessionId}/messages")
async def post_message(request: web.Request) -> web.Response:
    """Send without a websocket: stored, sequenced and delivered exactly like a live send."""
    session_id = path_id(request, "sessionId", "session")
    body = await read_body(request, SendRequest)
    who = principal(request)
    session = await request.app[SESSIONS].can_read(who, session_id)
    if session["my_status"] is None or session["my_status"] == "declined":
        raise Forbidden("join the session before posting to it", code="not_a_participant")
    posted = await request.app[CHAT].post(
        who,
        session_id,
        kind=body.type,
        body=body.content,
        cid=body.client_message_id,
        file_url=body.file_url,
        meta=body.metadata,
        is_organizer=session["organizer_id"] == who.user_id,
    )
    return json_response(posted.frame, status=200 if posted.duplicate else 201)
