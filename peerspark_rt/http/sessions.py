"""/api/sessions: study sessions, participation, and the live room's history."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..errors import Forbidden
from ..protocol import Message
from ..sessions.chat import CHAT
from ..sessions.service import (
    SESSIONS,
    HistoryPage,
    HistoryQuery,
    Participant,
    Participation,
    SendRequest,
    SessionCreate,
    SessionInvitation,
    SessionInvite,
    SessionPage,
    SessionQuery,
    SessionState,
    SessionUpdate,
    StudySession,
)
from .contract import Reply, operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()

# The reference session is in the private pod and organized by its owner; the member and the
# moderator have joined it.
_IN_POD = {"outsider": 404, "banned": 404, "admin": 404}


class ParticipantList(msgspec.Struct):
    participants: list[Participant]


@routes.get("/api/sessions")
@operation(tag="sessions", access=signed_in(200))
async def list_sessions(request: web.Request, query: SessionQuery) -> SessionPage:
    """Sessions the caller can see."""
    return await request.app[SESSIONS].list_visible(principal(request), query)


@routes.post("/api/sessions")
@operation(
    tag="sessions",
    status=201,
    errors=(403, 404, 409),
    # a pod the caller does not belong to is a bad podId (422 naming it)
    access=signed_in(201, outsider=422, banned=422, admin=422),
)
async def create_session(request: web.Request, body: SessionCreate) -> StudySession:
    """Schedule a session (in a pod the caller belongs to, or on its own)."""
    return await request.app[SESSIONS].create(principal(request), body)


@routes.get("/api/sessions/{sessionId}")
@operation(tag="sessions", access=signed_in(200, **_IN_POD))
async def get_session(request: web.Request) -> StudySession:
    """One session."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].get(principal(request), session_id)


@routes.put("/api/sessions/{sessionId}")
@operation(
    tag="sessions",
    errors=(403, 409),
    access=signed_in(403, owner=200, **_IN_POD),
)
async def update_session(request: web.Request, body: SessionUpdate) -> StudySession:
    """Change a session (its organizer)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].update(principal(request), session_id, body)


@routes.delete("/api/sessions/{sessionId}")
@operation(tag="sessions", errors=(403, 409), access=signed_in(403, owner=200, **_IN_POD))
async def cancel_session(request: web.Request) -> SessionState:
    """Cancel a session (its organizer)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].cancel(principal(request), session_id)


@routes.post("/api/sessions/{sessionId}/join")
@operation(tag="sessions", errors=(403, 409), access=signed_in(200, **_IN_POD))
async def join_session(request: web.Request) -> Participation:
    """Join a session."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].join(principal(request), session_id)


@routes.delete("/api/sessions/{sessionId}/leave")
@operation(tag="sessions", errors=(403, 409), access=signed_in(204, owner=409, **_IN_POD))
async def leave_session(request: web.Request) -> None:
    """Leave a session."""
    session_id = path_id(request, "sessionId", "session")
    await request.app[SESSIONS].leave(principal(request), session_id)


@routes.post("/api/sessions/{sessionId}/start")
@operation(tag="sessions", errors=(403, 409), access=signed_in(403, owner=200, **_IN_POD))
async def start_session(request: web.Request) -> SessionState:
    """Start a scheduled session (its organizer)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].start(principal(request), session_id)


@routes.post("/api/sessions/{sessionId}/end")
@operation(
    tag="sessions",
    errors=(403, 409),
    # the reference session has not started: ending it is refused (409) once authorized
    access=signed_in(403, owner=409, **_IN_POD),
)
async def end_session(request: web.Request) -> SessionState:
    """End a session (its organizer)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].end(principal(request), session_id)


@routes.get("/api/sessions/{sessionId}/participants")
@operation(tag="sessions", access=signed_in(200, **_IN_POD))
async def participants(request: web.Request) -> ParticipantList:
    """Who joined the session, with attendance."""
    session_id = path_id(request, "sessionId", "session")
    people = await request.app[SESSIONS].participants(principal(request), session_id)
    return ParticipantList(participants=people)


@routes.get("/api/sessions/{sessionId}/messages")
@operation(tag="sessions", errors=(403,), access=signed_in(200, **_IN_POD))
async def history(request: web.Request, query: HistoryQuery) -> HistoryPage:
    """The live room's stored messages, by sequence number."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].history(principal(request), session_id, query)


@routes.post("/api/sessions/{sessionId}/messages")
@operation(
    tag="sessions",
    status=(201, 200),
    errors=(403, 409, 429),
    access=signed_in(201, **_IN_POD),
)
async def post_message(request: web.Request, body: SendRequest) -> Reply[Message]:
    """Send without a websocket: stored, sequenced and delivered exactly like a live send.

    200 (not 201) when the clientMessageId was already stored: the first copy is returned.
    """
    session_id = path_id(request, "sessionId", "session")
    who = principal(request)
    session = await request.app[SESSIONS].can_read(who, session_id)
    if session["my_status"] in (None, "declined", "invited"):
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
    return Reply(posted.frame, status=200 if posted.duplicate else 201)


@routes.post("/api/sessions/{sessionId}/invite")
@operation(
    tag="sessions",
    status=(201, 200),
    errors=(403, 409),
    access=signed_in(403, owner=201, **_IN_POD),
)
async def invite(request: web.Request, body: SessionInvite) -> Reply[SessionInvitation]:
    """Invite someone (the organizer); outside a pod session's pod they come as a guest.

    200 when they are already invited. They are told live (a `session_invite` notification)."""
    session_id = path_id(request, "sessionId", "session")
    result, created = await request.app[SESSIONS].invite(principal(request), session_id, body)
    return Reply(result, status=201 if created else 200)


@routes.post("/api/sessions/{sessionId}/accept")
@operation(tag="sessions", errors=(409,), access=signed_in(409, **_IN_POD))
async def accept_invitation(request: web.Request) -> Participation:
    """Accept an invitation to the session (409 without one)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].accept(principal(request), session_id)


@routes.post("/api/sessions/{sessionId}/decline")
@operation(tag="sessions", errors=(409,), access=signed_in(409, **_IN_POD))
async def decline_invitation(request: web.Request) -> Participation:
    """Decline an invitation to the session (409 without one)."""
    session_id = path_id(request, "sessionId", "session")
    return await request.app[SESSIONS].decline(principal(request), session_id)
