"""The AI study assistant: conversations, grounded and Socratic answers, streaming to a caller
and to a live study-session room, study plans and explanations.

One piece because every way of answering (JSON, stream, room stream, plan, explanation)
shares one prepare/answer pipeline with its quota reservation and its single transaction.

A question goes through `prepare` (every check: AI configured, input, ownership, visibility,
room membership, the hourly limit, the room question's moderation, and the daily token quota,
whose reservation it takes) and then `answer` (one JSON answer) or `stream` (the answer's pieces
as they come). Only a complete answer is stored: the question and the answer are written
together in one transaction after the upstream finished, with the tokens it reported, so a
failed or interrupted call leaves no half-written conversation, and gives its reservation back.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..accounts.ratelimit import Limit, RateLimiter
from ..analytics.events import Analytics, Kind
from ..config import Settings
from ..errors import AppError, Conflict, Forbidden, Invalid, NotFound, RateLimited
from ..infra import cursor as cursors
from ..infra import validation
from ..infra.aftercommit import unit
from ..infra.ai_client import AIClient, ChatMessage, Delta, StreamEnd, Usage
from ..infra.live import LiveEvents
from ..infra.observe import NoMetrics, ProductMetrics
from ..infra.pool import Database
from ..moderation.service import ModerationContext, ModerationService
from ..sessions.chat import ChatService
from ..sessions.service import SessionService
from . import budget, prompts
from . import db as ai_db
from .quota import QuotaService, QuotaState, Reservation
from .retrieval import Retriever, RoomAudience

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 8000
MAX_HISTORY_MESSAGES = 200
CHAT_TEMPERATURE = 0.7
PLAN_TEMPERATURE = 0.5


# --- request and response shapes (the spec's, plus streaming and the room) ----------------------


class ChatContextBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str | None = None
    subject: str | None = None
    pod_id: str | None = None
    resource_id: str | None = None


class ChatRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    message: str
    conversation_id: str | None = None
    context: ChatContextBody | None = None
    stream: bool = False  # or send Accept: text/event-stream
    session_id: str | None = None  # also stream the answer into this study session's room
    show_solution: bool = False  # doubt solving: the full solution now, not guiding questions


class StudyPlanRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    subject: str
    goals: list[str]
    timeframe: str
    current_level: str
    available_time: float  # hours per week


class ExplainRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    topic: str
    subject: str
    level: str = "intermediate"
    format: str = "text"


class Citation(msgspec.Struct, rename="camel"):
    label: int
    id: str
    title: str
    passage: str


class ChatResponse(msgspec.Struct, rename="camel"):
    message: str
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    tokens_used: int
    suggestions: list[str] | None = None
    citations: list[Citation] = []
    mode: str | None = None  # doubt solving: "socratic" or "solution"
    truncated: bool = False  # the answer hit the length limit
    session_message_seq: int | None = None  # where it was posted in the session room


class Conversation(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    conversation_type: str
    context: dict[str, Any]
    session_id: str | None
    title: str | None
    message_count: int
    tokens_used: int
    created_at: dt.datetime
    last_message_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Conversation:
        return cls(**{f: row[f] for f in cls.__struct_fields__})


class ConversationPage(msgspec.Struct, rename="camel"):
    conversations: list[Conversation]
    next_cursor: str | None


class ConversationQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str | None = None
    limit: int = 20
    cursor: str | None = None


class AIMessage(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    role: str
    content: str
    message_type: str
    metadata: dict[str, Any]
    tokens_used: int | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AIMessage:
        values = {f: row[f] for f in cls.__struct_fields__}
        values["metadata"] = values["metadata"] or {}
        values["message_type"] = values["message_type"] or "text"
        return cls(**values)


class ConversationDetail(msgspec.Struct, rename="camel"):
    conversation: Conversation
    messages: list[AIMessage]
    next_cursor: str | None


class MessagesQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 100
    cursor: str | None = None


class UsageView(msgspec.Struct, rename="camel"):
    limit: int
    used: int
    remaining: int
    resets_in: int
    premium: bool


# --- what flows between prepare, answer and stream -----------------------------------------------


@dataclass(slots=True)
class Room:
    session_id: uuid.UUID
    name: str
    # Everyone in the room reads the answer, so it may only draw on what they all may read:
    # public resources, and those shared with the session's pod (for pod sessions).
    pod_id: uuid.UUID | None = None


@dataclass(slots=True)
class Prepared:
    """A question that passed every check and holds a quota reservation."""

    principal: Principal
    endpoint: str
    conversation_id: uuid.UUID
    new_conversation: bool
    conversation_type: str
    context: dict[str, Any]
    question: str
    messages: list[ChatMessage]
    prompt_tokens: int
    sources: list[prompts.Source]
    mode: str | None
    suggestions: list[str] | None
    temperature: float
    reservation: Reservation
    quota: QuotaState
    room: Room | None = None
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    question_id: uuid.UUID = field(default_factory=uuid.uuid4)
    asked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of a streamed answer."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    response: ChatResponse
    quota: QuotaState


def _message_type(text: str) -> str:
    if "```" in text:
        return "code"
    if re.search(r"\$\$|\\\(|\\\[|\\frac|\\sum|\\int", text):
        return "math"
    return "text"


class AssistantService:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        ai: AIClient,
        quota: QuotaService,
        retriever: Retriever,
        limiter: RateLimiter,
        sessions: SessionService,
        chat: ChatService,
        moderation: ModerationService,
        live: LiveEvents,
        analytics: Analytics,
        metrics: ProductMetrics | None = None,
    ) -> None:
        self.analytics = analytics
        self.db = db
        self.settings = settings
        self.ai = ai
        self.quota = quota
        self.retriever = retriever
        self.limiter = limiter
        self.sessions = sessions
        self.chat = chat
        self.moderation = moderation
        self.live = live
        self.metrics: ProductMetrics = metrics or NoMetrics()
        self.hourly = Limit("ai", settings.ai_queries_per_hour, 3600)

    # --- conversations ----------------------------------------------------------------------

    async def conversations(
        self, principal: Principal, query: ConversationQuery
    ) -> ConversationPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        if query.type is not None:
            validation.one_of(query.type, "type", prompts.CONVERSATION_TYPES)
        before = (
            cursors.decode(query.cursor, "ai_conversations", (dt.datetime, uuid.UUID))
            if query.cursor
            else None
        )
        rows = await ai_db.list_conversations(
            self.db.pool,
            principal.user_id,
            conversation_type=query.type,
            before=before,
            limit=query.limit + 1,
        )
        items = [Conversation.from_row(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = cursors.encode("ai_conversations", (items[-1].created_at, items[-1].id))
        return ConversationPage(items, next_cursor)

    async def conversation(
        self, principal: Principal, conversation_id: uuid.UUID, query: MessagesQuery
    ) -> ConversationDetail:
        if not 1 <= query.limit <= 500:
            raise Invalid("limit", "must be between 1 and 500")
        row = await ai_db.get_conversation(self.db.pool, conversation_id, principal.user_id)
        if row is None:
            raise NotFound("conversation not found")
        after = (
            cursors.decode(query.cursor, "ai_messages", (dt.datetime, uuid.UUID))
            if query.cursor
            else None
        )
        rows = await ai_db.messages_page(
            self.db.pool, conversation_id, after=after, limit=query.limit + 1
        )
        messages = [AIMessage.from_row(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = cursors.encode("ai_messages", (messages[-1].created_at, messages[-1].id))
        return ConversationDetail(Conversation.from_row(row), messages, next_cursor)

    async def delete(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        if not await ai_db.delete_conversation(self.db.pool, conversation_id, principal.user_id):
            raise NotFound("conversation not found")

    async def usage(self, principal: Principal) -> tuple[UsageView, QuotaState]:
        state = await self.quota.state(principal)
        premium = principal.is_premium and self.settings.enable_premium_features
        return UsageView(state.limit, state.used, state.remaining, state.reset_in, premium), state

    # --- preparing a question ---------------------------------------------------------------

    async def prepare_chat(self, principal: Principal, body: ChatRequest) -> Prepared:
        """Every check before a chat answer; on success the quota is reserved (the caller must
        then `answer` or `stream`, which settle or release it)."""
        self.ai.require()
        question = validation.text(body.message, "message", max_len=MAX_QUESTION_CHARS)
        ctx = body.context or ChatContextBody()
        conversation_id = (
            validation.parse_uuid(body.conversation_id, "conversationId")
            if body.conversation_id
            else None
        )
        if ctx.type is not None:
            validation.one_of(ctx.type, "context.type", prompts.CONVERSATION_TYPES)
        subject = validation.optional_text(ctx.subject, "context.subject", 100)
        pod_id = validation.parse_uuid(ctx.pod_id, "context.podId") if ctx.pod_id else None
        resource_id = (
            validation.parse_uuid(ctx.resource_id, "context.resourceId")
            if ctx.resource_id
            else None
        )
        session_id = (
            validation.parse_uuid(body.session_id, "sessionId") if body.session_id else None
        )

        history: list[ChatMessage] = []
        stored_context: dict[str, Any] = {}
        if conversation_id is not None:
            row = await ai_db.get_conversation(self.db.pool, conversation_id, principal.user_id)
            if row is None:
                raise NotFound("conversation not found")
            conversation_type = row["conversation_type"] or "general"
            if ctx.type is not None and ctx.type != conversation_type:
                raise Invalid(
                    "context.type",
                    f"this is a {conversation_type} conversation; start a new one for {ctx.type}",
                )
            stored_context = dict(row["context"] or {})
            history = [
                ChatMessage(r["role"], r["content"])
                for r in await ai_db.recent_history(
                    self.db.pool, conversation_id, MAX_HISTORY_MESSAGES
                )
            ]
        else:
            conversation_type = ctx.type or "general"

        # This turn's context: what the request names (404 if the asker may not see it), else
        # what the conversation had (whose resources the search still filters by visibility
        # now, so a pod the asker has left grounds nothing private any more).
        subject = subject or stored_context.get("subject")
        room = await self._room(principal, session_id) if session_id else None
        if pod_id is not None or resource_id is not None:
            await self.retriever.check(principal, pod_id, resource_id, room_pod=_room_pod(room))
        else:
            pod_id = _stored_uuid(stored_context.get("podId"))
            resource_id = _stored_uuid(stored_context.get("resourceId"))

        mode: str | None = None
        suggestions: list[str] | None = None
        if conversation_type == "doubt_solving":
            socratic = not (body.show_solution or prompts.wants_solution(question))
            mode = "socratic" if socratic else "solution"
            suggestions = (
                list(prompts.SOCRATIC_SUGGESTIONS)
                if socratic
                else ["Give me a similar problem to practise"]
            )
        sources = await self.retriever.sources(
            principal, question, pod_id=pod_id, resource_id=resource_id, room_pod=_room_pod(room)
        )
        system = prompts.system_prompt(
            conversation_type,
            subject=subject,
            socratic=mode == "socratic",
            sources=sources,
        )
        context = {
            k: v
            for k, v in {
                "type": conversation_type,
                "subject": subject,
                "podId": str(pod_id) if pod_id else None,
                "resourceId": str(resource_id) if resource_id else None,
            }.items()
            if v is not None
        }
        return await self._reserve(
            principal,
            endpoint="chat",
            conversation_id=conversation_id or uuid.uuid4(),
            new_conversation=conversation_id is None,
            conversation_type=conversation_type,
            context=context,
            question=question,
            system=system,
            history=history,
            sources=sources,
            mode=mode,
            suggestions=suggestions,
            temperature=CHAT_TEMPERATURE,
            max_answer=self.settings.ai_max_tokens,
            room=room,
        )

    async def prepare_study_plan(self, principal: Principal, body: StudyPlanRequest) -> Prepared:
        self.ai.require()
        subject = validation.text(body.subject, "subject", max_len=100)
        if not 1 <= len(body.goals) <= 10:
            raise Invalid("goals", "give 1 to 10 goals")
        goals = [validation.text(g, f"goals[{i}]", max_len=300) for i, g in enumerate(body.goals)]
        timeframe = validation.text(body.timeframe, "timeframe", max_len=100)
        level = validation.text(body.current_level, "currentLevel", max_len=100)
        if not 0 < body.available_time <= 168:
            raise Invalid("availableTime", "must be more than 0 and at most 168 hours a week")
        question = prompts.study_plan_request(subject, goals, timeframe, level, body.available_time)
        return await self._reserve(
            principal,
            endpoint="study_plan",
            conversation_id=uuid.uuid4(),
            new_conversation=True,
            conversation_type="study_plan",
            context={
                "type": "study_plan",
                "subject": subject,
                "goals": goals,
                "timeframe": timeframe,
                "currentLevel": level,
                "availableTime": body.available_time,
            },
            question=question,
            system=prompts.system_prompt("study_plan", subject=subject),
            history=[],
            sources=[],
            mode=None,
            suggestions=["Turn this into a weekly schedule", "What should I start with today?"],
            temperature=PLAN_TEMPERATURE,
            max_answer=self.settings.ai_max_tokens * 3 // 2,
        )

    async def prepare_explain(self, principal: Principal, body: ExplainRequest) -> Prepared:
        self.ai.require()
        topic = validation.text(body.topic, "topic", max_len=300)
        subject = validation.text(body.subject, "subject", max_len=100)
        validation.one_of(body.level, "level", prompts.LEVELS)
        validation.one_of(body.format, "format", prompts.FORMATS)
        question = prompts.explain_request(topic, subject, body.level, body.format)
        return await self._reserve(
            principal,
            endpoint="explain",
            conversation_id=uuid.uuid4(),
            new_conversation=True,
            conversation_type="explanation",
            context={
                "type": "explanation",
                "subject": subject,
                "topic": topic,
                "level": body.level,
                "format": body.format,
            },
            question=question,
            system=prompts.system_prompt("explanation", subject=subject),
            history=[],
            sources=[],
            mode=None,
            suggestions=["Give me another example", "Explain it more simply", "Quiz me on this"],
            temperature=CHAT_TEMPERATURE,
            max_answer=self.settings.ai_max_tokens,
        )

    async def _room(self, principal: Principal, session_id: uuid.UUID) -> Room:
        """The session's live room, if the asker takes part in the session and it is open."""
        session = await self.sessions.can_read(principal, session_id)
        if session["my_status"] is None or session["my_status"] == "declined":
            raise Forbidden(
                "join the session before asking the assistant in its room",
                code="not_a_participant",
            )
        if session["status"] in ("completed", "cancelled"):
            raise Conflict(f"the session is {session['status']}", code="session_closed")
        return Room(session_id, f"session:{session_id}", session["pod_id"])

    async def _reserve(
        self,
        principal: Principal,
        *,
        endpoint: str,
        conversation_id: uuid.UUID,
        new_conversation: bool,
        conversation_type: str,
        context: dict[str, Any],
        question: str,
        system: str,
        history: list[ChatMessage],
        sources: list[prompts.Source],
        mode: str | None,
        suggestions: list[str] | None,
        temperature: float,
        max_answer: int,
        room: Room | None = None,
    ) -> Prepared:
        messages = budget.trim_history(
            [ChatMessage("system", system)],
            history,
            ChatMessage("user", question),
            self.settings.ai_history_tokens,
        )
        prompt_tokens = budget.estimate_prompt(messages)
        state = await self.limiter.hit(self.hourly, str(principal.user_id))
        if state.exceeded:
            self.metrics.ai_call(endpoint, "rate_limited", 0)
            raise RateLimited(
                f"at most {self.hourly.limit} AI questions an hour; try again later",
                retry_after=state.retry_after,
            )
        if room is not None:
            # The question is shown to the whole room with the answer: moderate it as a message.
            await self.moderation.screen(
                principal,
                "message",
                question,
                {"kind": "text", "body": question, "cid": None, "fileUrl": None, "meta": None},
                ModerationContext(session_id=room.session_id),
                field="message",
            )
        try:
            reservation, quota = await self.quota.reserve(principal, prompt_tokens, max_answer)
        except RateLimited:
            self.metrics.ai_call(endpoint, "quota_exceeded", 0)
            raise
        return Prepared(
            principal=principal,
            endpoint=endpoint,
            conversation_id=conversation_id,
            new_conversation=new_conversation,
            conversation_type=conversation_type,
            context=context,
            question=question,
            messages=messages,
            prompt_tokens=prompt_tokens,
            sources=sources,
            mode=mode,
            suggestions=suggestions,
            temperature=temperature,
            reservation=reservation,
            quota=quota,
            room=room,
        )

    # --- answering --------------------------------------------------------------------------

    async def answer(self, prepared: Prepared) -> Finished:
        """The whole answer at once. With a room, it is streamed there while it comes."""
        if prepared.room is not None:
            final: Finished | None = None
            async for item in self.stream(prepared):
                if isinstance(item, Finished):
                    final = item
            if final is None:
                raise RuntimeError("final is missing")
            return final
        try:
            completion = await self.ai.complete(
                prepared.messages,
                max_tokens=prepared.reservation.max_answer,
                temperature=prepared.temperature,
            )
        except BaseException as exc:
            await self._failed(prepared, exc)
            raise
        return await self._finish(
            prepared, completion.text, completion.usage, completion.finish_reason, streamed=False
        )

    async def stream(self, prepared: Prepared) -> AsyncIterator[Piece | Finished]:
        """The answer's pieces as the upstream sends them, then `Finished`. With a room, every
        piece is also published there (`ai_delta`), and the complete answer posted as an `ai`
        message. A failure raises (after telling the room with `ai_error`)."""
        room = prepared.room
        ids = {
            "conversationId": str(prepared.conversation_id),
            "messageId": str(prepared.message_id),
        }
        parts: list[str] = []
        end: StreamEnd | None = None
        try:
            if room is not None:
                await self.live.event(
                    room.name,
                    "ai_started",
                    {
                        **ids,
                        "askedBy": {
                            "id": str(prepared.principal.user_id),
                            "username": prepared.principal.username,
                        },
                        "question": prepared.question,
                    },
                )
            async for item in self.ai.stream(
                prepared.messages,
                max_tokens=prepared.reservation.max_answer,
                temperature=prepared.temperature,
            ):
                if isinstance(item, Delta):
                    index = len(parts)
                    parts.append(item.text)
                    if room is not None:
                        await self.live.event(
                            room.name, "ai_delta", {**ids, "delta": item.text, "index": index}
                        )
                    yield Piece(index, item.text)
                else:
                    end = item
            if end is None:
                raise RuntimeError("end is missing")
        except BaseException as exc:
            await self._failed(prepared, exc)
            raise
        text = "".join(parts)
        if not text.strip():
            error = AppError(
                "the AI service sent an empty answer; try again", code="upstream_error"
            )
            error.status = 502
            await self._failed(prepared, error)
            raise error
        yield await self._finish(prepared, text, end.usage, end.finish_reason, streamed=True)

    async def _failed(self, prepared: Prepared, exc: BaseException) -> None:
        """Give the reservation back and tell the room; nothing was stored."""
        code = exc.code if isinstance(exc, AppError) else "interrupted"
        message = exc.message if isinstance(exc, AppError) else "the answer was interrupted"
        self.metrics.ai_call(prepared.endpoint, code, 0)
        try:
            await self.quota.release(prepared.reservation)
        except Exception:
            log.exception("giving back an AI quota reservation failed")
        if prepared.room is not None:
            try:
                await self.live.event(
                    prepared.room.name,
                    "ai_error",
                    {
                        "conversationId": str(prepared.conversation_id),
                        "messageId": str(prepared.message_id),
                        "code": code,
                        "message": message,
                    },
                )
            except Exception:
                log.exception("telling the room about a failed AI answer failed")

    async def _finish(
        self,
        prepared: Prepared,
        text: str,
        usage: Usage | None,
        finish_reason: str,
        *,
        streamed: bool,
    ) -> Finished:
        """Store the question and the complete answer, charge the tokens, count the query, and
        post the answer to the room."""
        if usage is None:
            completion = budget.estimate_text(text)
            usage = Usage(
                prepared.prompt_tokens, completion, prepared.prompt_tokens + completion, True
            )
        principal = prepared.principal
        cited = set(prompts.cited_labels(text, prepared.sources))
        citations = [
            Citation(s.label, s.resource_id, s.title, s.passage)
            for s in prepared.sources
            if s.label in cited
        ]
        metadata: dict[str, Any] = {
            "model": self.ai.model,
            "promptTokens": usage.prompt_tokens,
            "completionTokens": usage.completion_tokens,
            "finishReason": finish_reason,
            "streamed": streamed,
        }
        if usage.estimated:
            metadata["estimatedTokens"] = True
        if citations:
            metadata["citations"] = [msgspec.to_builtins(c) for c in citations]
        if prepared.sources:
            metadata["sources"] = [
                {"label": s.label, "id": s.resource_id, "title": s.title} for s in prepared.sources
            ]
        if prepared.mode:
            metadata["mode"] = prepared.mode
        if prepared.room is not None:
            metadata["sessionId"] = str(prepared.room.session_id)
        try:
            async with unit(self.db) as (conn, after):
                if prepared.new_conversation:
                    await ai_db.insert_conversation(
                        conn,
                        conversation_id=prepared.conversation_id,
                        user_id=principal.user_id,
                        conversation_type=prepared.conversation_type,
                        context=prepared.context,
                        session_id=str(prepared.room.session_id) if prepared.room else None,
                    )
                elif not await ai_db.lock_own_conversation(
                    conn, prepared.conversation_id, principal.user_id
                ):
                    raise NotFound("the conversation was deleted while the answer was written")
                await ai_db.insert_message(
                    conn,
                    message_id=prepared.question_id,
                    conversation_id=prepared.conversation_id,
                    role="user",
                    content=prepared.question,
                    created_at=prepared.asked_at,
                )
                await ai_db.insert_message(
                    conn,
                    message_id=prepared.message_id,
                    conversation_id=prepared.conversation_id,
                    role="assistant",
                    content=text,
                    message_type=_message_type(text),
                    metadata=metadata,
                    tokens_used=usage.total_tokens,
                )
                quota = await self.quota.settle(prepared.reservation, usage.total_tokens, conn)
                await self.analytics.record(
                    conn,
                    principal.user_id,
                    Kind.AI_QUERY,
                    occurred_at=prepared.asked_at,
                    session_id=prepared.room.session_id if prepared.room else None,
                    value=float(usage.total_tokens),
                    meta={
                        "conversationId": str(prepared.conversation_id),
                        "messageId": str(prepared.message_id),
                        "endpoint": prepared.endpoint,
                        "type": prepared.conversation_type,
                        "tokens": usage.total_tokens,
                        "model": self.ai.model,
                        "streamed": streamed,
                        "grounded": bool(prepared.sources),
                    },
                    dedupe_key=str(prepared.question_id),
                    after=after,
                )
        except BaseException as exc:
            # Nothing was stored, but the upstream did the work: charge what it reported.
            prepared.reservation.settled = False  # the transaction rolled the settlement back
            try:
                await self.quota.settle(prepared.reservation, usage.total_tokens)
            except Exception:
                log.exception("charging an AI answer that could not be stored failed")
            await self._failed(prepared, exc)
            raise
        self.metrics.ai_call(prepared.endpoint, "ok", usage.total_tokens)
        response = ChatResponse(
            message=text,
            conversation_id=prepared.conversation_id,
            message_id=prepared.message_id,
            tokens_used=usage.total_tokens,
            suggestions=prepared.suggestions,
            citations=citations,
            mode=prepared.mode,
            truncated=finish_reason == "length",
        )
        if prepared.room is not None:
            response.session_message_seq = await self._post_to_room(
                prepared, text, citations, usage.total_tokens
            )
        return Finished(response, quota)

    async def _post_to_room(
        self, prepared: Prepared, text: str, citations: list[Citation], tokens: int
    ) -> int | None:
        room = prepared.room
        if room is None:
            raise RuntimeError("room is missing")
        ids = {
            "conversationId": str(prepared.conversation_id),
            "messageId": str(prepared.message_id),
        }
        try:
            posted = await self.chat.post_ai(
                prepared.principal,
                room.session_id,
                body=text,
                cid=f"ai-{prepared.message_id.hex}",
                meta={
                    **ids,
                    "question": prepared.question[:1000],
                    "citations": [{"id": c.id, "title": c.title} for c in citations],
                    "tokensUsed": tokens,
                },
            )
        except AppError as exc:
            log.warning("posting an AI answer to %s failed: %s", room.name, exc)
            await self.live.event(
                room.name, "ai_error", {**ids, "code": exc.code, "message": exc.message}
            )
            return None
        await self.live.event(
            room.name, "ai_done", {**ids, "seq": posted.frame.seq, "tokensUsed": tokens}
        )
        return posted.frame.seq


def _room_pod(room: Room | None) -> RoomAudience | None:
    return None if room is None else RoomAudience(room.pod_id)


def _stored_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


# the application's key for what this module provides (typed app state)
ASSISTANT = web.AppKey("assistant", AssistantService)
