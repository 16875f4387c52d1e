"""/api/ai: the study assistant (chat, streamed or not; conversations; study plans;
explanations; the caller's token allowance)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec
from aiohttp import web

from ..ai.assistant import (
    ASSISTANT,
    ChatRequest,
    ChatResponse,
    ConversationDetail,
    ConversationPage,
    ConversationQuery,
    ExplainRequest,
    MessagesQuery,
    Piece,
    Prepared,
    StudyPlanRequest,
    UsageView,
)
from ..errors import AppError
from .contract import Raw, Reply, operation, signed_in
from .middleware import REQUEST_ID, cors_headers, principal
from .render import encode, path_id

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _wants_stream(request: web.Request, body: ChatRequest) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("Accept", "")


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + encode(data) + b"\n\n"


# AI answers can be refused for quota (429), and fail upstream (502, 503 when AI is off, 504).
_AI_ERRORS = (403, 404, 409, 429, 502, 503, 504)


def _ai_configured(request: web.Request) -> None:
    """503 before anything else when AI is off or has no key."""
    request.app[ASSISTANT].ai.require()


# The reference conversation is the member's.
_MINE = {"member": 200}


@routes.post("/api/ai/chat")
@operation(
    tag="ai",
    errors=_AI_ERRORS,
    precheck=_ai_configured,
    raw={
        200: Raw("text/event-stream", "server-sent events (`stream`, or Accept: text/event-stream)")
    },
    access=signed_in(200),
)
async def chat(request: web.Request, body: ChatRequest) -> Reply[ChatResponse] | web.StreamResponse:
    """Answer a question, as JSON or as server-sent events.

    With `Accept: text/event-stream` or `"stream": true` the answer comes as server-sent events:
    `start`, one `delta` per piece, then `done` (the ChatResponse) or `error`. Everything that
    can be refused is refused before the stream starts, as JSON.
    """
    assistant = request.app[ASSISTANT]
    prepared = await assistant.prepare_chat(principal(request), body)
    if not _wants_stream(request, body):
        finished = await assistant.answer(prepared)
        return Reply(finished.response, headers=finished.quota.headers())
    return await _stream(request, prepared)


async def _stream(request: web.Request, prepared: Prepared) -> web.StreamResponse:
    assistant = request.app[ASSISTANT]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            "X-Request-Id": request.get(REQUEST_ID, ""),
            **prepared.quota.headers(),
            **cors_headers(request),
        }
    )
    connected = True

    async def send(event: str, data: Any) -> None:
        # A caller that went away does not stop the answer: it is still finished, stored,
        # charged and (with a room) shown to the room.
        nonlocal connected
        if not connected:
            return
        try:
            await response.write(_sse(event, data))
        except ConnectionError:
            connected = False
            log.info("AI stream reader went away; finishing the answer anyway")

    try:
        await response.prepare(request)
    except ConnectionError:
        connected = False
    await send(
        "start",
        {"conversationId": prepared.conversation_id, "messageId": prepared.message_id},
    )
    try:
        async for item in assistant.stream(prepared):
            if isinstance(item, Piece):
                await send("delta", {"index": item.index, "delta": item.text})
            else:
                done = msgspec.to_builtins(item.response)
                done["quota"] = {
                    "limit": item.quota.limit,
                    "remaining": item.quota.remaining,
                    "resetsIn": item.quota.reset_in,
                }
                await send("done", done)
    except AppError as exc:
        await send("error", {"error": exc.to_dict(), "status": exc.status})
    except Exception:
        # The stream has begun: the error middleware can no longer answer with JSON.
        log.exception("AI stream failed")
        failure = AppError("internal server error")
        await send("error", {"error": failure.to_dict(), "status": failure.status})
    if connected:
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


@routes.get("/api/ai/conversations")
@operation(tag="ai", access=signed_in(200))
async def conversations(request: web.Request, query: ConversationQuery) -> ConversationPage:
    """The caller's assistant conversations, newest first."""
    return await request.app[ASSISTANT].conversations(principal(request), query)


@routes.get("/api/ai/conversations/{conversationId}")
@operation(tag="ai", access=signed_in(404, **_MINE))
async def conversation(request: web.Request, query: MessagesQuery) -> ConversationDetail:
    """One of the caller's conversations, with its messages."""
    conversation_id = path_id(request, "conversationId", "conversation")
    return await request.app[ASSISTANT].conversation(principal(request), conversation_id, query)


@routes.delete("/api/ai/conversations/{conversationId}")
@operation(tag="ai", access=signed_in(404, member=204))
async def delete_conversation(request: web.Request) -> None:
    """Delete one of the caller's conversations."""
    conversation_id = path_id(request, "conversationId", "conversation")
    await request.app[ASSISTANT].delete(principal(request), conversation_id)


@routes.post("/api/ai/study-plan")
@operation(tag="ai", errors=_AI_ERRORS, precheck=_ai_configured, access=signed_in(200))
async def study_plan(request: web.Request, body: StudyPlanRequest) -> Reply[ChatResponse]:
    """A study plan for a subject and goal."""
    assistant = request.app[ASSISTANT]
    prepared = await assistant.prepare_study_plan(principal(request), body)
    finished = await assistant.answer(prepared)
    return Reply(finished.response, headers=finished.quota.headers())


@routes.post("/api/ai/explain")
@operation(tag="ai", errors=_AI_ERRORS, precheck=_ai_configured, access=signed_in(200))
async def explain(request: web.Request, body: ExplainRequest) -> Reply[ChatResponse]:
    """An explanation of a concept, at a chosen level."""
    assistant = request.app[ASSISTANT]
    prepared = await assistant.prepare_explain(principal(request), body)
    finished = await assistant.answer(prepared)
    return Reply(finished.response, headers=finished.quota.headers())


@routes.get("/api/ai/usage")
@operation(tag="ai", access=signed_in(200))
async def usage(request: web.Request) -> Reply[UsageView]:
    """The caller's token allowance: limit, used, remaining, when it resets."""
    view, state = await request.app[ASSISTANT].usage(principal(request))
    return Reply(view, headers=state.headers())
