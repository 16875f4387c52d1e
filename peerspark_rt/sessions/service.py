"""Study sessions: scheduling, participation, the live room's rules, attendance and history.

One piece because every rule here turns on the same locked session row and participant
state (who may join, start, post, read); split, the lock discipline would be spread thin.

Rules:
* Pod sessions are only for active members of the pod; group sessions are open to everyone;
  individual sessions are visible to their organizer and the people they invite.
* `max_participants` is enforced under a row lock, so concurrent joins cannot pass it.
* Status moves scheduled -> ongoing -> completed, or scheduled/ongoing -> cancelled; nothing
  else. Only the organizer starts, ends, edits or cancels.
* Attendance (joined_at, left_at, attendance_duration) comes from live presence in the room:
  the first device entering marks the user present, the last one leaving (or its node dying)
  adds the interval to their attendance.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..analytics.events import Analytics, Kind, NewEvent
from ..calendar import recurrence
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import validation
from ..infra.aftercommit import unit
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..notifications.service import NewNotification
from ..pods.service import PodService
from ..protocol import Message, Sender
from . import db as sessions_db

log = logging.getLogger(__name__)

SESSION_TYPES = ("individual", "group", "pod")
STATUSES = ("scheduled", "ongoing", "completed", "cancelled")
# status -> the statuses it may move to
TRANSITIONS = {
    "scheduled": ("ongoing", "cancelled"),
    "ongoing": ("completed", "cancelled"),
    "completed": (),
    "cancelled": (),
}
_STATUS_EVENTS = {
    "ongoing": "session_started",
    "completed": "session_completed",
    "cancelled": "session_cancelled",
}
MAX_DURATION = dt.timedelta(days=7)
HISTORY_PAGE_MAX = 200


class SessionCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str
    session_type: Literal["individual", "group", "pod"]
    start_time: dt.datetime
    end_time: dt.datetime
    timezone: str = "UTC"
    description: str | None = None
    pod_id: str | None = None
    max_participants: int | None = None
    is_recurring: bool = False
    recurrence_pattern: dict[str, Any] | str | None = None
    tags: list[str] = []
    meeting_url: str | None = None
    resources: list[Any] = []
    notes: str | None = None


class SessionUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    start_time: dt.datetime | msgspec.UnsetType = msgspec.UNSET
    end_time: dt.datetime | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    max_participants: int | msgspec.UnsetType | None = msgspec.UNSET
    is_recurring: bool | msgspec.UnsetType = msgspec.UNSET
    recurrence_pattern: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    meeting_url: str | msgspec.UnsetType | None = msgspec.UNSET
    resources: list[Any] | msgspec.UnsetType = msgspec.UNSET
    notes: str | msgspec.UnsetType | None = msgspec.UNSET
    recording_url: str | msgspec.UnsetType | None = msgspec.UNSET


class SessionQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str | None = None
    pod_id: str | None = None
    status: str | None = None
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    limit: int = 20
    offset: int = 0


class HistoryQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    after: int | None = None
    before: int | None = None
    limit: int = 50


class SendRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A message posted over REST (for clients without a websocket)."""

    content: str
    type: Literal["text", "file", "system"] = "text"
    file_url: str | None = None
    client_message_id: str | None = None
    metadata: dict[str, Any] | None = None


class SessionInvite(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    user_id: str
    message: str | None = None


class SessionInvitation(msgspec.Struct, rename="camel"):
    session_id: uuid.UUID
    user_id: uuid.UUID
    role: str  # participant, or guest (someone outside the session's pod)
    status: str


class StudySession(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    title: str
    description: str | None
    session_type: str
    pod_id: uuid.UUID | None
    organizer_id: uuid.UUID
    start_time: dt.datetime
    end_time: dt.datetime
    timezone: str
    meeting_url: str | None
    max_participants: int | None
    current_participants: int
    status: str
    is_recurring: bool
    recurrence_pattern: dict[str, Any] | None
    tags: list[str]
    resources: list[Any]
    notes: str | None
    recording_url: str | None
    last_message_seq: int
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    my_status: str | None = None
    my_role: str | None = None
    unread_count: int | None = None  # messages after the last one you acknowledged
    live_room: str = ""

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StudySession:
        fields = {f: row[f] for f in cls.__struct_fields__ if f in row}
        fields["live_room"] = f"session:{row['id']}"
        if row["my_status"] is not None:
            fields["unread_count"] = row["last_message_seq"] - (row["my_last_read_seq"] or 0)
        return cls(**fields)


class SessionPage(msgspec.Struct, rename="camel"):
    sessions: list[StudySession]
    total: int
    limit: int
    offset: int


class Participant(msgspec.Struct, rename="camel"):
    user_id: uuid.UUID
    username: str
    first_name: str
    last_name: str
    avatar_url: str | None
    status: str
    role: str
    joined_at: dt.datetime | None
    left_at: dt.datetime | None
    attendance_duration: int | None
    attendance_seconds: int
    present: bool


class Participation(msgspec.Struct, rename="camel"):
    session_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    status: str
    current_participants: int


class HistoryPage(msgspec.Struct, rename="camel"):
    messages: list[Message]
    last_seq: int
    has_more: bool


class SessionState(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    status: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


def message_frame(row: Any, room: str) -> Message:
    """A stored message as the live room's `message` frame."""
    sender_id = row["sender_id"]
    retracted = row["retracted_at"] is not None
    return Message(
        room=room,
        seq=row["seq"],
        id=str(row["id"]),
        sender=Sender(
            id=str(sender_id) if sender_id else "", username=row["sender_username"] or ""
        ),
        kind=row["message_type"],
        body="" if retracted else row["content"] or "",
        ts=row["created_at"].isoformat(),
        cid=row["client_message_id"],
        file_url=None if retracted else row["file_url"],
        meta=None if retracted else row["metadata"] or None,
        retracted=retracted,
    )


def _as_utc(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None:
        raise Invalid(field, "must include a UTC offset, e.g. 2026-05-01T09:00:00Z")
    return value.astimezone(dt.UTC)


def _check_times(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise Invalid("endTime", "must be after startTime")
    if end - start > MAX_DURATION:
        raise Invalid("endTime", "a session lasts at most 7 days")


async def _recurrence(
    is_recurring: bool, pattern: Any, start: dt.datetime, end: dt.datetime, tz: str
) -> dict[str, Any]:
    """The recurrence columns of a session: its pattern, normalized by the same RFC 5545 rules
    as calendar events and computed in the session's own time zone (calendar/recurrence.py),
    and `span_end`, when its last occurrence ends (None: never)."""
    if pattern is None:
        if is_recurring:
            raise Invalid("recurrencePattern", "is required when isRecurring is true")
        return {"recurrence_pattern": None, "span_end": end}
    if not is_recurring:
        raise Invalid("isRecurring", "must be true when a recurrencePattern is given")
    validation.bounded_json(pattern, "recurrencePattern", 8192)
    # Checking a rule can walk many candidate dates (bounded, but up to ~0.5 s): off the loop.
    series = recurrence.Series(start, end, tz)
    return await asyncio.to_thread(_checked_recurrence, pattern, series)


def _checked_recurrence(pattern: Any, series: recurrence.Series) -> dict[str, Any]:
    parsed = recurrence.parse_pattern(pattern, series)
    _start, span_end = recurrence.series_span(replace(series, pattern=parsed))
    return {"recurrence_pattern": parsed.to_json(all_day=False), "span_end": span_end}


def _common_fields(given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in given.items():
        camel = validation.camel(name)
        match name:
            case "title":
                out[name] = validation.text(value, camel, max_len=255)
            case "description" | "notes":
                out[name] = (
                    validation.text(value, camel, max_len=10000)
                    if value and value.strip()
                    else None
                )
            case "timezone":
                out[name] = validation.timezone(value, camel)
            case "start_time" | "end_time":
                out[name] = _as_utc(value, camel)
            case "max_participants":
                if value is not None and not 1 <= value <= 10_000:
                    raise Invalid(camel, "must be between 1 and 10000")
                out[name] = value
            case "tags":
                out[name] = validation.tags(value, camel)
            case "meeting_url" | "recording_url":
                out[name] = validation.optional_url(value, camel)
            case "resources":
                out[name] = validation.bounded_json(value, camel, 16384)
            case _:
                out[name] = value
    return out


class SessionService:
    def __init__(
        self, db: Database, pods: PodService, live: LiveEvents, analytics: Analytics
    ) -> None:
        self.db = db
        self.pods = pods
        self.live = live
        self.analytics = analytics
        pods.rooms_lost_with.append(self._rooms_in_pod)

    async def _rooms_in_pod(self, pod_id: uuid.UUID, user_id: uuid.UUID) -> list[str]:
        """The rooms of the pod's sessions `user_id` took part in: they go with the pod."""
        ids = await sessions_db.rooms_in_pod(self.db.pool, pod_id, user_id)
        return [f"session:{sid}" for sid in ids]

    async def visible_session(
        self, session_id: uuid.UUID, user_id: uuid.UUID
    ) -> asyncpg.Record | None:
        """The session with the viewer's part in it, if the viewer may see it."""
        return await sessions_db.get_for(self.db.pool, session_id, user_id)

    async def _visible(self, principal: Principal, session_id: uuid.UUID) -> asyncpg.Record:
        row = await sessions_db.get_for(self.db.pool, session_id, principal.user_id)
        if row is None:
            raise NotFound("session not found")
        return row

    async def _organized(self, principal: Principal, session_id: uuid.UUID) -> asyncpg.Record:
        row = await self._visible(principal, session_id)
        if row["organizer_id"] != principal.user_id:
            raise Forbidden("only the organizer can do this", code="not_organizer")
        return row

    # --- CRUD --------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: SessionCreate) -> StudySession:
        values = _common_fields(
            {f: getattr(body, f) for f in body.__struct_fields__ if f not in ("pod_id",)}
        )
        _check_times(values["start_time"], values["end_time"])
        values |= await _recurrence(
            body.is_recurring,
            body.recurrence_pattern,
            values["start_time"],
            values["end_time"],
            values["timezone"],
        )
        pod_id = validation.parse_uuid(body.pod_id, "podId") if body.pod_id else None
        if body.session_type == "pod":
            if pod_id is None:
                raise Invalid("podId", "is required for pod sessions")
            try:
                await self.pods.require_member(principal, pod_id)
            except NotFound:
                raise Invalid("podId", "no pod with this id that you belong to") from None
        elif pod_id is not None:
            raise Invalid("podId", "only pod sessions belong to a pod")
        values.update(
            session_type=body.session_type,
            pod_id=pod_id,
            organizer_id=principal.user_id,
            current_participants=1,
        )
        async with self.db.transaction() as conn:
            session_id = await sessions_db.insert_session(conn, values)
            await sessions_db.upsert_participant(
                conn, session_id, principal.user_id, role="organizer", status="accepted"
            )
        session = await self.get(principal, session_id)
        if pod_id is not None:
            await self.live.event(
                f"pod:{pod_id}",
                "session_scheduled",
                {
                    "sessionId": str(session_id),
                    "title": session.title,
                    "startTime": session.start_time.isoformat(),
                },
            )
        return session

    async def get(self, principal: Principal, session_id: uuid.UUID) -> StudySession:
        return StudySession.from_row(await self._visible(principal, session_id))

    async def list_visible(self, principal: Principal, query: SessionQuery) -> SessionPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        if query.offset < 0:
            raise Invalid("offset", "must not be negative")
        if query.type is not None:
            validation.one_of(query.type, "type", SESSION_TYPES)
        if query.status is not None:
            validation.one_of(query.status, "status", STATUSES)
        pod_id = validation.parse_uuid(query.pod_id, "podId") if query.pod_id else None
        start = _as_utc(query.start_date, "startDate") if query.start_date else None
        end = _as_utc(query.end_date, "endDate") if query.end_date else None
        if start and end and end < start:
            raise Invalid("endDate", "must not be before startDate")
        rows = await sessions_db.list_for(
            self.db.pool,
            principal.user_id,
            session_type=query.type,
            pod_id=pod_id,
            status=query.status,
            start=start,
            end=end,
            limit=query.limit,
            offset=query.offset,
        )
        total = rows[0]["total"] if rows else 0
        return SessionPage(
            [StudySession.from_row(r) for r in rows], total, query.limit, query.offset
        )

    async def update(
        self, principal: Principal, session_id: uuid.UUID, body: SessionUpdate
    ) -> StudySession:
        given = {
            f: getattr(body, f)
            for f in body.__struct_fields__
            if getattr(body, f) is not msgspec.UNSET
        }
        if not given:
            raise Invalid("body", "no session fields to change")
        for required in ("title", "start_time", "end_time", "timezone"):
            if required in given and given[required] is None:
                raise Invalid(required, "must not be null")
        changes = _common_fields(given)
        current = await self._organized(principal, session_id)
        if current["status"] in ("completed", "cancelled"):
            raise Conflict(f"the session is {current['status']}", code="session_closed")
        start = changes.get("start_time", current["start_time"])
        end = changes.get("end_time", current["end_time"])
        _check_times(start, end)
        if {"is_recurring", "recurrence_pattern", "start_time", "end_time", "timezone"} & set(
            changes
        ):
            changes |= await _recurrence(
                changes.get("is_recurring", current["is_recurring"]),
                changes.get("recurrence_pattern", current["recurrence_pattern"]),
                start,
                end,
                changes.get("timezone", current["timezone"]),
            )
        async with self.db.transaction() as conn:
            locked = await sessions_db.lock(conn, session_id)
            if locked is None:
                raise RuntimeError("locked is missing")
            new_max = changes.get("max_participants")
            if new_max is not None and new_max < locked["current_participants"]:
                raise Invalid(
                    "maxParticipants",
                    f"must be at least the current participant count "
                    f"({locked['current_participants']})",
                )
            await sessions_db.update(conn, session_id, changes)
        session = await self.get(principal, session_id)
        await self.live.event(
            f"session:{session_id}", "session_updated", {"sessionId": str(session_id)}
        )
        return session

    async def _move(self, principal: Principal, session_id: uuid.UUID, to: str) -> SessionState:
        await self._organized(principal, session_id)
        async with unit(self.db) as (conn, after):
            locked = await sessions_db.lock(conn, session_id)
            if locked is None:
                raise RuntimeError("locked is missing")
            if to not in TRANSITIONS[locked["status"]]:
                raise Conflict(
                    f"a {locked['status']} session cannot become {to}",
                    code="invalid_transition",
                )
            row = await sessions_db.set_status(conn, session_id, to)
            if to in ("completed", "cancelled"):
                closed = await sessions_db.close_attendance(conn, session_id)
                events = [_stretch_event(stretch, ended=True) for stretch in closed]
                await self.analytics.record_many(conn, events, after=after)
        state = SessionState(session_id, row["status"], row["started_at"], row["ended_at"])
        await self.live.event(
            f"session:{session_id}",
            _STATUS_EVENTS[to],
            {"sessionId": str(session_id), "status": to},
        )
        return state

    async def start(self, principal: Principal, session_id: uuid.UUID) -> SessionState:
        return await self._move(principal, session_id, "ongoing")

    async def end(self, principal: Principal, session_id: uuid.UUID) -> SessionState:
        return await self._move(principal, session_id, "completed")

    async def cancel(self, principal: Principal, session_id: uuid.UUID) -> SessionState:
        return await self._move(principal, session_id, "cancelled")

    # --- participation -----------------------------------------------------------------------

    async def join(self, principal: Principal, session_id: uuid.UUID) -> Participation:
        session = await self._visible(principal, session_id)
        guest = session["my_role"] == "guest"
        if session["session_type"] == "pod" and session["my_pod_role"] is None and not guest:
            raise Forbidden("pod sessions are for members of the pod", code="not_a_member")
        async with self.db.transaction() as conn:
            locked = await sessions_db.lock(conn, session_id)
            if locked is None:
                raise RuntimeError("locked is missing")
            current = await sessions_db.get_participant(
                conn, session_id, principal.user_id, lock=True
            )
            if current is not None and current["status"] not in ("declined", "invited"):
                return Participation(
                    session_id,
                    principal.user_id,
                    current["role"],
                    current["status"],
                    locked["current_participants"],
                )
            invited = current is not None and current["status"] == "invited"
            if locked["status"] in ("completed", "cancelled"):
                raise Conflict(f"the session is {locked['status']}", code="session_closed")
            if session["session_type"] == "individual" and not invited:
                raise Forbidden("individual sessions are by invitation", code="not_invited")
            limit = locked["max_participants"]
            if limit is not None and locked["current_participants"] >= limit:
                raise Conflict("this session is full", code="session_full")
            role = current["role"] if invited and current is not None else "participant"
            await sessions_db.upsert_participant(
                conn, session_id, principal.user_id, role=role, status="accepted"
            )
            count = await sessions_db.change_participant_count(conn, session_id, +1)
        await self.live.event(
            f"session:{session_id}",
            "participant_joined",
            {
                "sessionId": str(session_id),
                "userId": str(principal.user_id),
                "username": principal.username,
                "currentParticipants": count,
            },
        )
        return Participation(session_id, principal.user_id, role, "accepted", count)

    # --- invitations -------------------------------------------------------------------------

    async def invite(
        self, principal: Principal, session_id: uuid.UUID, body: SessionInvite
    ) -> tuple[SessionInvitation, bool]:
        """Invite someone (the organizer): they are told at once (a `session_invite`
        notification, live on their devices) and may accept or decline. Someone outside a pod
        session's pod comes as a guest of that one session. Returns (invitation, created)."""
        invitee_id = validation.parse_uuid(body.user_id, "userId")
        message = validation.optional_text(body.message, "message", 1000)
        session = await self._organized(principal, session_id)
        if invitee_id == principal.user_id:
            raise Invalid("userId", "you organize this session")
        invitee = await sessions_db.user_brief(self.db.pool, invitee_id)
        if invitee is None or invitee["account_status"] != "active":
            raise Invalid("userId", "no user has this id")
        notification = None
        async with self.db.transaction() as conn:
            locked = await sessions_db.lock(conn, session_id)
            if locked is None:
                raise NotFound("session not found")
            if locked["status"] in ("completed", "cancelled"):
                raise Conflict(f"the session is {locked['status']}", code="session_closed")
            role = "participant"
            if locked["pod_id"] is not None:
                membership = await self.pods.member_role(locked["pod_id"], invitee_id, conn)
                if membership is None:
                    if await sessions_db.banned_from_pod(conn, locked["pod_id"], invitee_id):
                        raise Conflict("this user is banned from the pod", code="banned")
                    role = "guest"
            current = await sessions_db.get_participant(conn, session_id, invitee_id, lock=True)
            if current is not None and current["status"] == "invited":
                return SessionInvitation(session_id, invitee_id, current["role"], "invited"), False
            if current is not None and current["status"] != "declined":
                raise Conflict("this user already takes part", code="already_participating")
            await sessions_db.invite_participant(conn, session_id, invitee_id, role)
            notification = await self.pods.notifications.store(
                conn,
                NewNotification(
                    recipient_id=invitee_id,
                    notification_type="session_invite",
                    title=f"{principal.username} invited you to {session['title']}",
                    message=message,
                    action_url=f"/sessions/{session_id}",
                    metadata={
                        "sessionId": str(session_id),
                        "startTime": session["start_time"].isoformat(),
                        "role": role,
                    },
                    sender_id=principal.user_id,
                ),
            )
        await self.pods.notifications.push(notification)
        return SessionInvitation(session_id, invitee_id, role, "invited"), True

    async def decline(self, principal: Principal, session_id: uuid.UUID) -> Participation:
        """Decline an invitation (accepting is joining: POST /join, or /accept)."""
        await self._visible(principal, session_id)
        async with self.db.transaction() as conn:
            locked = await sessions_db.lock(conn, session_id)
            if locked is None:
                raise NotFound("session not found")
            current = await sessions_db.get_participant(
                conn, session_id, principal.user_id, lock=True
            )
            if current is None or current["status"] != "invited":
                raise Conflict("you have no pending invitation to this session", code="not_invited")
            await sessions_db.upsert_participant(
                conn, session_id, principal.user_id, role=current["role"], status="declined"
            )
        await self.live.event(
            f"user:{locked['organizer_id']}",
            "session_invitation_declined",
            {"sessionId": str(session_id), "userId": str(principal.user_id)},
        )
        return Participation(
            session_id, principal.user_id, current["role"], "declined",
            locked["current_participants"],
        )  # fmt: skip

    async def accept(self, principal: Principal, session_id: uuid.UUID) -> Participation:
        """Accept a pending invitation (409 without one)."""
        await self._visible(principal, session_id)
        current = await sessions_db.get_participant(self.db.pool, session_id, principal.user_id)
        if current is None or current["status"] != "invited":
            raise Conflict("you have no pending invitation to this session", code="not_invited")
        return await self.join(principal, session_id)

    async def leave(self, principal: Principal, session_id: uuid.UUID) -> None:
        await self._visible(principal, session_id)
        async with unit(self.db) as (conn, after):
            await sessions_db.lock(conn, session_id)
            current = await sessions_db.get_participant(
                conn, session_id, principal.user_id, lock=True
            )
            if current is None or current["status"] == "declined":
                raise Conflict("you are not taking part in this session", code="not_a_participant")
            if current["role"] == "organizer":
                raise Conflict(
                    "the organizer cannot leave; cancel the session instead",
                    code="organizer_cannot_leave",
                )
            stretch = await sessions_db.mark_absent(conn, session_id, principal.user_id)
            if stretch is not None:
                event = _stretch_event(stretch, ended=True)
                await self.analytics.record_many(conn, [event], after=after)
            await sessions_db.delete_participant(conn, session_id, principal.user_id)
            count = await sessions_db.change_participant_count(conn, session_id, -1)
        room = f"session:{session_id}"
        await self.live.evict(room, principal.user_id)
        await self.live.event(
            room,
            "participant_left",
            {
                "sessionId": str(session_id),
                "userId": str(principal.user_id),
                "currentParticipants": count,
            },
        )

    async def participants(self, principal: Principal, session_id: uuid.UUID) -> list[Participant]:
        await self._visible(principal, session_id)
        rows = await sessions_db.participants(self.db.pool, session_id)
        return [Participant(**{k: r[k] for k in Participant.__struct_fields__}) for r in rows]

    # --- the live room -----------------------------------------------------------------------

    async def enter_live(
        self, principal: Principal, session_id: uuid.UUID, *, enrol: bool = False
    ) -> None:
        """Authorize entering `session:<id>`: participants and the organizer may. Others are
        refused unless they ask to `enrol`, which takes part in the session first (the same
        rules as POST /join): taking part is an explicit act, never a side effect of a join."""
        session = await sessions_db.get_for(self.db.pool, session_id, principal.user_id)
        if session is None:
            raise NotFound("session not found")
        if session["my_status"] not in (None, "declined", "invited"):
            return
        if not enrol:
            raise Forbidden(
                "take part in the session first (POST /api/sessions/{id}/join, or join the room "
                'with "enrol": true)',
                code="not_a_participant",
            )
        await self.join(principal, session_id)

    async def can_read(self, principal: Principal, session_id: uuid.UUID) -> asyncpg.Record:
        session = await self._visible(principal, session_id)
        participant = session["my_status"] not in (None, "declined", "invited")
        if not participant and session["my_pod_role"] is None:
            raise Forbidden(
                "only participants read this session's messages", code="not_a_participant"
            )
        return session

    async def history(
        self, principal: Principal, session_id: uuid.UUID, query: HistoryQuery
    ) -> HistoryPage:
        if not 1 <= query.limit <= HISTORY_PAGE_MAX:
            raise Invalid("limit", f"must be between 1 and {HISTORY_PAGE_MAX}")
        if query.after is not None and query.before is not None:
            raise Invalid("before", "give either after or before, not both")
        for name, value in (("after", query.after), ("before", query.before)):
            if value is not None and value < 0:
                raise Invalid(name, "must not be negative")
        session = await self.can_read(principal, session_id)
        last = session["last_message_seq"]
        room = f"session:{session_id}"
        if query.before is not None:
            rows = await sessions_db.messages_before(
                self.db.pool, session_id, query.before, query.limit
            )
            has_more = bool(rows) and rows[0]["seq"] > 1
        else:
            after = query.after if query.after is not None else max(0, last - query.limit)
            rows = await sessions_db.messages_after(self.db.pool, session_id, after, query.limit)
            has_more = bool(rows) and rows[-1]["seq"] < last
        return HistoryPage([message_frame(r, room) for r in rows], last, has_more)

    async def record_read(self, session_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> None:
        await sessions_db.record_read(self.db.pool, session_id, user_id, seq)

    async def record_attendance(
        self, changes: Sequence[Attendance], *, timeout: float | None = None
    ) -> None:
        """Attendance from live presence, as users come and go (a departure may be heard on
        several nodes: only the first call ends the stretch, and a stretch's events are keyed
        by its start, so each is written once). Written a run at a time: consecutive arrivals
        (or departures), each user once, in one transaction, so a class arriving together
        costs a few round trips rather than four each. A run the database refuses is written
        change by change: one bad change fails nobody else. `timeout`: seconds each write may
        take (a run that takes longer, e.g. behind another writer's lock, is rolled back and
        written change by change too)."""
        for present, pairs in _attendance_runs(changes):
            try:
                async with asyncio.timeout(timeout):
                    await self._record_run(present, pairs)
            except Exception:
                if len(pairs) == 1:
                    log.exception("attendance not written: %s", pairs[0])
                    continue
                log.warning("attendance: a run of %d failed together; writing each", len(pairs))
                for pair in pairs:
                    try:
                        async with asyncio.timeout(timeout):
                            await self._record_run(present, [pair])
                    except Exception:
                        log.exception("attendance not written: %s", pair)

    async def _record_run(self, present: bool, pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        session_ids, user_ids = [s for s, _ in pairs], [u for _, u in pairs]
        async with unit(self.db) as (conn, after):
            if present:
                rows = await sessions_db.mark_present_many(conn, session_ids, user_ids)
                stretches = [r for r in rows if r["began"]]
            else:
                stretches = await sessions_db.mark_absent_many(conn, session_ids, user_ids)
            events = [_stretch_event(r, ended=not present) for r in stretches]
            await self.analytics.record_many(conn, events, after=after)


Attendance = tuple[uuid.UUID, uuid.UUID, bool]  # (session, user, present now)


def _attendance_runs(
    changes: Sequence[Attendance],
) -> list[tuple[bool, list[tuple[uuid.UUID, uuid.UUID]]]]:
    """The changes in order, cut into runs of one direction with each user once (a user who
    comes and goes within a batch is written in that order)."""
    runs: list[tuple[bool, list[tuple[uuid.UUID, uuid.UUID]]]] = []
    seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for session_id, user_id, present in changes:
        pair = (session_id, user_id)
        if not runs or runs[-1][0] != present or pair in seen:
            runs.append((present, []))
            seen = set()
        runs[-1][1].append(pair)
        seen.add(pair)
    return runs


def _stretch_event(stretch: asyncpg.Record, *, ended: bool) -> NewEvent:
    """`session_joined` when a stretch of live presence began; `session_left`, with the
    minutes present, when it ended."""
    session_id: uuid.UUID = stretch["session_id"]
    since: dt.datetime = stretch["since"]
    key = f"{session_id}:{since.isoformat()}"
    if not ended:
        return NewEvent(
            user_id=stretch["user_id"],
            kind=Kind.SESSION_JOINED,
            occurred_at=since,
            pod_id=stretch["pod_id"],
            session_id=session_id,
            dedupe_key=key,
        )
    until: dt.datetime = stretch["until"]
    return NewEvent(
        user_id=stretch["user_id"],
        kind=Kind.SESSION_LEFT,
        occurred_at=until,
        started_at=since,
        pod_id=stretch["pod_id"],
        session_id=session_id,
        value=round(max(0.0, (until - since).total_seconds()) / 60, 2),
        subject=stretch["subject"],
        dedupe_key=key,
    )


# the application's key for what this module provides (typed app state)
SESSIONS = web.AppKey("sessions", SessionService)
