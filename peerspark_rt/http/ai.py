"""/api/ai: the study assistant (chat, streamed or not; conversations; study plans;
explanations; the caller's token allowance)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec
from aiohttp import web

from ..errors import AppError
from ..services.ai.assistant import (
    ChatRequest,
    ConversationQuery,
    ExplainRequest,
    MessagesQuery,
    Piece,
    Prepared,
    StudyPlanRequest,
)
from .keys import ASSISTANT, REQUEST_ID
from .middleware import cors_headers, principal
from .render import encode, json_response, no_content, path_id, read_body, read_query

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _wants_stream(request: web.Request, body: ChatRequest) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("Accept", "")


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + encode(data) + b"\n\n"


@routes.post("/api/ai/chat")
async def chat(request: web.Request) -> web.StreamResponse:
    """Answer a question. With `Accept: text/event-stream` or `"stream": true` the answer comes
    as server-sent events: `start`, one `delta` per piece, then `done` (the ChatResponse) or
    `error`. Everything that can be refused is refused before the stream starts, as JSON."""
    assistant = request.app[ASSISTANT]
    assistant.ai.require()  # 503 before anything else when AI is off or has no key
    body = await read_body(request, ChatRequest)
    prepared = await assistant.prepare_chat(principal(request), body)
    if not _wants_stream(request, body):
        finished = await assistant.answer(prepared)
        return json_response(finished.response, headers=finished.quota.headers())
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
async def conversations(request: web.Request) -> web.Response:
    query = read_query(request, ConversationQuery)
    return json_response(await request.app[ASSISTANT].conversations(principal(request), query))


@routes.get("/api/ai/conversations/{conversationId}")
async def conversation(request: web.Request) -> web.Response:
    conversation_id = path_id(request, "conversationId", "conversation")
    query = read_query(request, MessagesQuery)
    detail = await request.app[ASSISTANT].conversation(principal(request), conversation_id, query)
    return json_response(detail)


@routes.delete("/api/ai/conversations/{conversationId}")
async def delete_conversation(request: web.Request) -> web.Response:
    conversation_id = path_id(request, "conversationId", "conversation")
    await request.app[ASSISTANT].delete(principal(request), conversation_id)
    return no_content()


@routes.post("/api/ai/study-plan")
async def study_plan(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    assistant.ai.require()
    body = await read_body(request, StudyPlanRequest)
    prepared = await assistant.prepare_study_plan(principal(request), body)
    finished = await assistant.answer(prepared)
    return json_response(finished.response, headers=finished.quota.headers())


@routes.post("/api/ai/explain")
async def explain(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    assistant.ai.require()
    body = await read_body(request, ExplainRequest)
    prepared = await assistant.prepare_explain(principal(request), body)
    finished = await assistant.answer(prepared)
    return json_response(finished.response, headers=finished.quota.headers())


@routes.get("/api/ai/usage")
async def usage(request: web.Request) -> web.Response:
    view, state = await request.app[ASSISTANT].usage(principal(request))
    return json_response(view, headers=state.headers())
