"""Focus rooms: who may command a room's focus timer, storing it, and crediting its blocks.

A session room's organizer runs its timer; anyone runs one in their own user room (solo
focus). A command is applied to the stored timer under its row lock (advanced to now first),
saved with the next version, and published to the room on every node; each node's room actor
then follows the schedule by itself (actors/focus.py says why no node owns the clock).

Members' blocks come back from the room actors (`credit`, a hub hook): a block completed by
whoever was in the room, socket open, from its first minute to its end; abandoned by whoever
started it and left. Each is one analytics event per member, keyed by timer and block, so the
nodes that saw the same member (devices on two nodes) write it once.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..actors import focus as timer
from ..actors.focus import FocusCredit, FocusRejected
from ..analytics.events import Analytics, Kind, NewEvent
from ..errors import Conflict, Forbidden, Invalid
from ..infra.aftercommit import unit
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..protocol import Focus, FocusState, FocusUpdate, json_encoder, parse_room
from . import db as sessions_db

MAX_WORK = 4 * 3600  # seconds
MAX_BREAK = 3600
MAX_BLOCKS = 24
MAX_LONG_EVERY = 12

_REASONS = {
    "start": "started",
    "pause": "paused",
    "resume": "resumed",
    "skip": "skipped",
    "stop": "stopped",
}


def _ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


class FocusService:
    def __init__(
        self, db: Database, live: LiveEvents, analytics: Analytics, *, min_seconds: int = 60
    ) -> None:
        self.db = db
        self.live = live
        self.analytics = analytics
        self.min_seconds = min_seconds

    # --- the store, as the room actors read it (hub.FocusStore) -----------------------------

    async def focus_of(self, room: str) -> bytes | None:
        state = await sessions_db.focus_state(self.db.pool, room)
        return state.encode() if state is not None else None

    # --- commands ------------------------------------------------------------------------

    async def authorize(self, principal: Principal, room: str) -> None:
        """Raise unless the principal may command the timer of `room`."""
        parsed = parse_room(room)
        kind, ident = parsed if parsed else ("", "")
        if kind == "user":
            if ident != str(principal.user_id):
                raise Forbidden("a focus timer of your own runs in your user room")
            return
        if kind != "session":
            raise Invalid("room", "focus timers run in session rooms and your user room")
        try:
            session_id = uuid.UUID(ident)
        except ValueError:
            raise Invalid("room", "is not a session room") from None
        row = await sessions_db.get_participant(self.db.pool, session_id, principal.user_id)
        if row is None or row["role"] != "organizer":
            raise Forbidden("only the organizer runs the room's focus timer", code="not_organizer")

    def _durations(self, frame: Focus) -> dict[str, int]:
        low = self.min_seconds
        for name, value, high in (
            ("work", frame.work, MAX_WORK),
            ("shortBreak", frame.short_break, MAX_BREAK),
            ("longBreak", frame.long_break, MAX_BREAK),
        ):
            if not low <= value <= high:
                raise Invalid(name, f"must be between {low} and {high} seconds")
        if not 1 <= frame.long_every <= MAX_LONG_EVERY:
            raise Invalid("longEvery", f"must be between 1 and {MAX_LONG_EVERY}")
        if not 1 <= frame.blocks <= MAX_BLOCKS:
            raise Invalid("blocks", f"must be between 1 and {MAX_BLOCKS}")
        return {
            "work": frame.work,
            "short_break": frame.short_break,
            "long_break": frame.long_break,
            "long_every": frame.long_every,
            "blocks": frame.blocks,
        }

    async def command(self, principal: Principal, frame: Focus) -> FocusState:
        """Apply a command to the room's timer; every node's room hears the new state."""
        await self.authorize(principal, frame.room)
        durations = self._durations(frame) if frame.op == "start" else {}
        async with unit(self.db) as (conn, after):
            stored = await sessions_db.lock_focus(conn, frame.room)
            current = msgspec.json.decode(stored, type=FocusState) if stored else None
            now = timer.now_ms()
            if current is not None:
                current, _ = timer.advance(current, now)
            by = str(principal.user_id)
            try:
                if frame.op == "start":
                    state = timer.start(current, now, by, **durations)
                else:
                    state = timer.apply(current, frame.op, now, by)
            except FocusRejected as exc:
                raise Conflict(str(exc), code="focus_conflict") from None
            await sessions_db.save_focus(
                conn, frame.room, json_encoder.encode(state).decode(), state.version
            )
            update = FocusUpdate(room=frame.room, reason=_REASONS[frame.op], timer=state)

            async def publish() -> None:
                await self.live.focus(update)

            after.add(publish)
        return state

    # --- what the rooms report -------------------------------------------------------------

    async def credit(self, credit: FocusCredit) -> None:
        """Members' completed or abandoned block, as analytics events (once per member)."""
        kind, ident = credit.room.partition(":")[::2]
        session_id = uuid.UUID(ident) if kind == "session" else None
        completed = credit.outcome == "completed"
        ended = _ms(credit.ended_at)
        async with unit(self.db) as (conn, after):
            await self.analytics.record_many(
                conn,
                [
                    NewEvent(
                        user_id=uuid.UUID(user),
                        kind=Kind.FOCUS_BLOCK_COMPLETED
                        if completed
                        else Kind.FOCUS_BLOCK_ABANDONED,
                        occurred_at=ended,
                        # the work itself (pauses excluded) is the time studied
                        started_at=ended - dt.timedelta(seconds=credit.seconds)
                        if completed
                        else None,
                        session_id=session_id,
                        value=round(credit.seconds / 60, 2),
                        meta={
                            "room": credit.room,
                            "timerId": credit.timer_id,
                            "block": credit.block,
                            "startedAt": _ms(credit.started_at).isoformat(),
                        },
                        dedupe_key=f"{credit.timer_id}:{credit.block}",
                    )
                    for user in credit.user_ids
                ],
                after=after,
            )


# the application's key for what this module provides (typed app state)
FOCUS = web.AppKey("focus", FocusService)
