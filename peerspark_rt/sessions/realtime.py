"""What a live socket may do, and doing it: the rules behind each client frame.

The websocket handler decodes frames and hands them here; this checks authorization against
the database (pod membership, session participation), stores chat messages, and asks the hub's
room actors to do the live part. Every refusal becomes an `error` frame with a code.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..actors import mail
from ..actors.connection import Connection, send_frame
from ..actors.hub import Hub
from ..errors import AppError, Forbidden, HeldForReview, Invalid, NotFound
from ..infra import validation
from ..infra.pool import Database
from ..pods.service import PodService
from ..protocol import (
    CLOSE_TOO_MANY_ERRORS,
    Ack,
    Acked,
    Error,
    Focus,
    Join,
    Leave,
    Left,
    Ping,
    Pong,
    Resume,
    ScreenShare,
    Send,
    ServerFrame,
    Typing,
    json_encoder,
    parse_room,
)
from . import db as sessions_db
from .chat import ChatService, SendOrder
from .focus import FocusService
from .service import SessionService, message_frame

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 10
# Errors that are the server's, not the client's: they do not count towards the limit of bad
# frames in a row (a database outage must not close every socket that keeps sending).
SERVER_SIDE = frozenset({"unavailable", "internal_error", "database_busy", "upstream_error"})


class SessionHistory:
    """The hub's view of stored session messages (the `History` protocol)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def last_seq(self, room: str) -> int:
        return await sessions_db.last_seq(self.db.pool, uuid.UUID(room.partition(":")[2]))

    async def since(self, room: str, after: int, upto: int, limit: int) -> list[tuple[int, bytes]]:
        session_id = uuid.UUID(room.partition(":")[2])
        out: list[tuple[int, bytes]] = []
        while after < upto and len(out) < limit:
            rows = await sessions_db.messages_after(
                self.db.pool, session_id, after, min(500, limit - len(out)), upto
            )
            if not rows:
                break
            out.extend((r["seq"], json_encoder.encode(message_frame(r, room))) for r in rows)
            after = rows[-1]["seq"]
        return out

    async def positions(self, rooms: list[str]) -> dict[str, int]:
        by_id = {uuid.UUID(room.partition(":")[2]): room for room in rooms}
        found = await sessions_db.positions(self.db.pool, list(by_id))
        return {by_id[session_id]: seq for session_id, seq in found.items()}


class RealtimeService:
    def __init__(
        self,
        *,
        hub: Hub,
        pods: PodService,
        sessions: SessionService,
        chat: ChatService,
        focus: FocusService,
        screen_share_enabled: bool,
        max_rooms: int = 100,
    ) -> None:
        self.hub = hub
        self.pods = pods
        self.sessions = sessions
        self.chat = chat
        self.focus = focus
        self.screen_share_enabled = screen_share_enabled
        self.max_rooms = max_rooms

    # --- replies to one socket -------------------------------------------------------------

    @staticmethod
    def reply(conn: Connection, frame: ServerFrame) -> None:
        send_frame(conn, frame)

    def error(
        self,
        conn: Connection,
        code: str,
        message: str,
        *,
        room: str | None = None,
        ref: str | None = None,
    ) -> None:
        if code not in SERVER_SIDE:
            conn.errors += 1
        self.reply(conn, Error(code=code, message=message, room=room, ref=ref))
        if conn.errors >= MAX_CONSECUTIVE_ERRORS:
            conn.close(CLOSE_TOO_MANY_ERRORS, "too many bad frames")

    def bad_frame(self, conn: Connection, exc: Exception, *, binary: bool) -> None:
        """A frame that did not decode: say what was wrong."""
        if isinstance(exc, msgspec.ValidationError):
            text = str(exc)
            code = (
                "unknown_type" if "Invalid value" in text and "`$.t`" in text else "invalid_frame"
            )
            self.error(conn, code, text)
        elif isinstance(exc, RecursionError):
            self.error(conn, "invalid_frame", "the frame is nested too deeply")
        else:
            self.error(
                conn, "bad_frame", f"frame is not valid {'MessagePack' if binary else 'JSON'}"
            )

    # --- dispatch ------------------------------------------------------------------------

    async def handle(
        self, conn: Connection, principal: Principal, frame: Any, order: SendOrder | None = None
    ) -> None:
        ok = True
        match frame:
            case Send():
                ok = await self._send(conn, principal, frame, order)
            case Join():
                ok = await self._join(conn, principal, frame)
            case Leave():
                await self.hub.leave(conn, frame.room)
                self.reply(conn, Left(room=frame.room))
            case Typing():
                ok = self._in_room(conn, frame.room) and self.hub.post(
                    conn, frame.room, mail.TypingFrom(conn, frame.state)
                )
            case ScreenShare():
                ok = self._share(conn, frame)
            case Ack():
                ok = self._in_room(conn, frame.room)
                if ok and frame.seq > conn.acked.get(frame.room, 0):
                    conn.acked[frame.room] = frame.seq
            case Resume():
                if frame.since < 0:
                    self.error(conn, "invalid_frame", "since must not be negative", room=frame.room)
                    return
                ok = self._in_room(conn, frame.room) and self.hub.post(
                    conn, frame.room, mail.Resume(conn, frame.since)
                )
            case Ping():
                self.reply(conn, Pong(id=frame.id))
            case Focus():
                ok = self._in_room(conn, frame.room) and await self._focus(principal, conn, frame)
        if ok:
            conn.errors = 0

    def _in_room(self, conn: Connection, room: str, ref: str | None = None) -> bool:
        if room in conn.rooms:
            return True
        self.error(conn, "not_joined", "join the room first", room=room, ref=ref)
        return False

    async def authorize_room(self, principal: Principal, room: str, *, enrol: bool = False) -> None:
        """Raise unless the principal may be in `room` (with `enrol`, a session room's
        would-be participant takes part first, as POST /api/sessions/{id}/join does)."""
        parsed = parse_room(room)
        if parsed is None:
            raise Invalid("room", "rooms are session:<id>, pod:<id>, user:<id> or admin:dashboard")
        kind, ident = parsed
        if kind == "admin":
            if ident != "dashboard":
                raise NotFound("admin room not found")
            if principal.role != "admin":
                raise Forbidden("the admin dashboard is for platform admins", code="not_admin")
            return
        try:
            target = uuid.UUID(ident)
        except ValueError:
            raise NotFound(f"{kind} not found") from None
        if kind == "user":
            if target != principal.user_id:
                raise Forbidden("you can only join your own user room", code="forbidden")
        elif kind == "pod":
            if await self.pods.member_role(target, principal.user_id) is None:
                await self.pods.visible_pod(principal, target)  # 404 for private pods
                raise Forbidden("only members of the pod may join its room", code="not_a_member")
        else:
            await self.sessions.enter_live(principal, target, enrol=enrol)

    async def _join(self, conn: Connection, principal: Principal, frame: Join) -> bool:
        if frame.since is not None and frame.since < 0:
            self.error(conn, "invalid_frame", "since must not be negative", room=frame.room)
            return False
        if frame.room not in conn.rooms and len(conn.rooms) >= self.max_rooms:
            self.error(
                conn,
                "too_many_rooms",
                f"a socket may be in at most {self.max_rooms} rooms; leave one first",
                room=frame.room,
            )
            return False
        try:
            await self.authorize_room(principal, frame.room, enrol=frame.enrol)
        except AppError as exc:
            self.error(conn, exc.code, exc.message, room=frame.room)
            return False
        refused = await self.hub.join(conn, frame.room, frame.since)
        if refused is not None:
            self.error(
                conn, refused, "the room cannot be entered right now; try again", room=frame.room
            )
            return False
        return True

    async def _focus(self, principal: Principal, conn: Connection, frame: Focus) -> bool:
        """A focus timer command; its result reaches every member (this socket too) as a
        `focus` frame."""
        try:
            await self.focus.command(principal, frame)
        except AppError as exc:
            self.error(conn, exc.code, exc.message, room=frame.room)
            return False
        return True

    def _share(self, conn: Connection, frame: ScreenShare) -> bool:
        if not self.screen_share_enabled:
            self.error(conn, "feature_disabled", "screen sharing is turned off", room=frame.room)
            return False
        if not frame.room.startswith("session:"):
            self.error(
                conn, "invalid_frame", "screen sharing happens in session rooms", room=frame.room
            )
            return False
        if frame.stream_id is not None and (
            len(frame.stream_id) > 200 or _has_control(frame.stream_id)
        ):
            self.error(
                conn,
                "invalid_frame",
                "streamId must be at most 200 characters, without control characters",
                room=frame.room,
            )
            return False
        return self._in_room(conn, frame.room) and self.hub.post(
            conn, frame.room, mail.ShareFrom(conn, frame.sharing, frame.stream_id)
        )

    async def _send(
        self, conn: Connection, principal: Principal, frame: Send, order: SendOrder | None
    ) -> bool:
        try:
            if not frame.room.startswith("session:"):
                self.error(
                    conn, "invalid_frame", "messages are sent to session rooms", ref=frame.cid
                )
                return False
            if not self._in_room(conn, frame.room, frame.cid):
                return False
            session_id = uuid.UUID(frame.room.partition(":")[2])
            is_organizer = frame.kind == "system" and await self._is_organizer(
                session_id, principal
            )
            posted = await self.chat.post(
                principal,
                session_id,
                kind=frame.kind,
                body=frame.body,
                cid=frame.cid,
                file_url=frame.file_url,
                meta=frame.meta,
                is_organizer=is_organizer,
                order=order,
            )
        except HeldForReview as exc:
            # The client did nothing wrong: this does not count towards the bad-frame limit.
            self.reply(
                conn,
                Error(
                    code=exc.code,
                    message=exc.message,
                    room=frame.room,
                    ref=frame.cid,
                    held=exc.held,
                ),
            )
            return True
        except AppError as exc:
            self.error(conn, exc.code, exc.message, room=frame.room, ref=frame.cid)
            return False
        finally:
            if order is not None:
                order.release()
        self.reply(
            conn,
            Acked(
                room=frame.room,
                cid=frame.cid,
                seq=posted.frame.seq,
                id=posted.frame.id,
                duplicate=posted.duplicate,
            ),
        )
        return True

    async def _is_organizer(self, session_id: uuid.UUID, principal: Principal) -> bool:
        row = await sessions_db.get_participant(
            self.sessions.db.pool, session_id, principal.user_id
        )
        return row is not None and row["role"] == "organizer"


def _has_control(value: str) -> bool:
    try:
        validation.no_control_characters(value, "streamId")
    except Invalid:
        return True
    return False


# the application's key for what this module provides (typed app state)
REALTIME = web.AppKey("realtime", RealtimeService)
