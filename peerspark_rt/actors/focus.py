"""A focus timer's clock: the phases that follow from its last command, and the commands.

A timer is a schedule, not a ticking process: its state after the last command (`FocusState`:
the phase, when it ends, the durations) fixes every later phase (work, short break, work, ...,
a long break after every `long_every` blocks, until `blocks` are done). Any node computes
the same state for the same moment from it (`advance`), so every node's room follows one
clock without asking any other node, and no node's death can stop it: there is no owner to
lose. Commands (`apply`) change the schedule; they are serialized by the store (a row lock and
a version) and published to every node.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from ..protocol import FocusState, FocusUpdate, json_encoder

# Commands that do not apply to the timer's state (the caller says why).
NOT_RUNNING = "no focus timer is running in this room"
NOT_PAUSED = "the focus timer is not paused"


class FocusRejected(Exception):
    """A command that does not apply to the timer as it is."""


@dataclass(frozen=True, slots=True)
class BlockEnded:
    """A work block that ran to its end."""

    timer_id: str
    block: int
    started_at: int  # ms
    ended_at: int  # ms
    work: int  # seconds


def advance(state: FocusState, now: int) -> tuple[FocusState, list[BlockEnded]]:
    """The timer at `now` (epoch ms), and the work blocks that ended on the way there."""
    ended: list[BlockEnded] = []
    s = state
    while s.status == "running" and s.ends_at <= now:
        if s.phase == "work":
            ended.append(BlockEnded(s.timer_id, s.block, s.work_started_at, s.ends_at, s.work))
            if s.block >= s.blocks:
                s = msgspec.structs.replace(s, status="done", remaining=0)
                break
            long = s.long_every > 0 and s.block % s.long_every == 0
            length = s.long_break if long else s.short_break
            s = msgspec.structs.replace(
                s,
                phase="long_break" if long else "break",
                phase_started_at=s.ends_at,
                ends_at=s.ends_at + length * 1000,
            )
        else:
            s = msgspec.structs.replace(
                s,
                phase="work",
                block=s.block + 1,
                phase_started_at=s.ends_at,
                work_started_at=s.ends_at,
                ends_at=s.ends_at + s.work * 1000,
            )
    return s, ended


def start(
    previous: FocusState | None,
    now: int,
    by: str,
    *,
    work: int,
    short_break: int,
    long_break: int,
    long_every: int,
    blocks: int,
) -> FocusState:
    """A new timer, its first work block beginning now (it replaces `previous`)."""
    return FocusState(
        timer_id=uuid.uuid4().hex,
        status="running",
        phase="work",
        block=1,
        blocks=blocks,
        work=work,
        short_break=short_break,
        long_break=long_break,
        long_every=long_every,
        ends_at=now + work * 1000,
        remaining=0,
        phase_started_at=now,
        work_started_at=now,
        version=(previous.version if previous else 0) + 1,
        by=by,
    )


def apply(current: FocusState | None, op: str, now: int, by: str) -> FocusState:
    """`pause`, `resume`, `skip` or `stop` applied at `now` to the timer as it is then
    (`current` already advanced to `now`)."""
    if current is None or current.status not in ("running", "paused"):
        raise FocusRejected(NOT_RUNNING)
    version = current.version + 1
    if op == "pause":
        if current.status != "running":
            raise FocusRejected("the focus timer is paused already")
        return msgspec.structs.replace(
            current,
            status="paused",
            remaining=max(0, current.ends_at - now),
            version=version,
            by=by,
        )
    if op == "resume":
        if current.status != "paused":
            raise FocusRejected(NOT_PAUSED)
        return msgspec.structs.replace(
            current,
            status="running",
            ends_at=now + current.remaining,
            remaining=0,
            version=version,
            by=by,
        )
    if op == "stop":
        return msgspec.structs.replace(
            current, status="stopped", remaining=0, version=version, by=by
        )
    if op != "skip":
        raise FocusRejected(f"unknown focus command {op!r}")
    # skip: the current phase ends now, uncounted; the next one begins (running)
    skipped = msgspec.structs.replace(current, status="running", ends_at=now)
    if current.phase == "work" and current.block >= current.blocks:
        return msgspec.structs.replace(skipped, status="done", version=version, by=by)
    following, _ = advance(skipped, now)
    return msgspec.structs.replace(following, version=version, by=by)


def elapsed_work(state: FocusState, now: int) -> int:
    """Seconds of the current work block done by `now`."""
    if state.phase != "work":
        return 0
    left = state.remaining if state.status == "paused" else max(0, state.ends_at - now)
    return max(0, state.work - left // 1000)


# --- a room's timer, as its actor keeps it ---------------------------------------------------

JOIN_TOLERANCE = 60_000  # ms into a work block during which arriving still starts it


@dataclass(frozen=True, slots=True)
class FocusCredit:
    """Members' outcome for one work block, handed to the hub's focus hooks: `completed`
    (present from its first minute to its end) or `abandoned` (started it, then left)."""

    room: str
    timer_id: str
    block: int
    outcome: str  # 'completed' | 'abandoned'
    user_ids: tuple[str, ...]
    started_at: int  # ms
    ended_at: int  # ms: the block's end, or when they left
    seconds: int  # of work done


class RoomFocus:
    """One room's focus timer and who is in its current block. Only its actor calls it (from
    the actor's task); it schedules `FocusDue` mail for phase ends and hands credits to the
    hub, never awaiting anything."""

    def __init__(
        self,
        room: str,
        *,
        fanout: Callable[[bytes], None],
        here: Callable[[str], bool],
        wake: Callable[[], None],
        credit: Callable[[FocusCredit], None],
    ) -> None:
        self.room = room
        self.state: FocusState | None = None
        self._fanout = fanout
        self._here = here  # the user still has a socket here (or is within the grace)
        self._wake = wake
        self._credit = credit
        self.since: dict[str, int] = {}  # user -> ms since continuously here
        self.starters: set[str] = set()  # who started the current block, here
        self._block: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- state ---------------------------------------------------------------------------

    def incoming(self, state: FocusState | None, reason: str, *, quiet: bool = False) -> None:
        """A state from the store or a command: taken when newer than ours. `quiet`: tell
        members only if it changed something."""
        now = now_ms()
        self._catch_up(now)
        current = self.state
        if state is None or (current is not None and state.version <= current.version):
            return
        state, _ = advance(state, now)  # (blocks it ended before now had nobody here)
        active = state.status in ("running", "paused") and state.phase == "work"
        key = (state.timer_id, state.block) if active else None
        if key != self._block:
            # the block in progress here was skipped, stopped or replaced: not counted
            self.starters.clear()
            self._block = None
            if key is not None:
                self._begin(state, now)
        self.state = state
        if not quiet or current is None or current.version != state.version:
            self._announce(reason)
        self._arm()

    def due(self) -> None:
        """A phase's end came (the `FocusDue` mail)."""
        self._timer = None
        self._catch_up(now_ms())
        self._arm()

    def _catch_up(self, now: int) -> None:
        if self.state is None:
            return
        state, ended = advance(self.state, now)
        if not ended and state == self.state:
            return
        for block in ended:
            if (block.timer_id, block.block) == self._block:
                done = [u for u in self.starters if self._here(u)]
            else:  # (the loop stalled past a whole block: whoever was here all along)
                done = [
                    u
                    for u, t in self.since.items()
                    if t <= block.started_at + JOIN_TOLERANCE and self._here(u)
                ]
            if done:
                self._credit(
                    FocusCredit(
                        self.room, block.timer_id, block.block, "completed", tuple(sorted(done)),
                        block.started_at, block.ended_at, block.work,
                    )
                )  # fmt: skip
            self.starters.clear()
            self._block = None
        self.state = state
        if state.status == "running" and state.phase == "work":
            self._begin(state, now)
        self._announce("done" if state.status == "done" else "phase")

    def _begin(self, state: FocusState, now: int) -> None:
        """A work block is under way: who is here from its first minute starts it."""
        self._block = (state.timer_id, state.block)
        cutoff = state.work_started_at + JOIN_TOLERANCE
        self.starters = {u for u, t in self.since.items() if t <= cutoff and self._here(u)}
        if now <= cutoff:
            self.starters.update(u for u in self.since if self._here(u))

    def _announce(self, reason: str) -> None:
        frame = FocusUpdate(room=self.room, reason=reason, timer=self.state)
        self._fanout(json_encoder.encode(frame))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.state is not None and self.state.status == "running":
            delay = max(0.0, (self.state.ends_at - now_ms()) / 1000)
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    # --- members -------------------------------------------------------------------------

    def arrived(self, user: str) -> None:
        """The user's first socket here (not a return within the grace)."""
        now = now_ms()
        self.since[user] = now
        state = self.state
        if (
            self._block is not None
            and state is not None
            and now <= state.work_started_at + JOIN_TOLERANCE
        ):
            self.starters.add(user)

    def left_here(self, user: str) -> None:
        """The user's last socket here is gone (after the grace)."""
        self.since.pop(user, None)

    def gone(self, user: str) -> None:
        """The user left the room everywhere: a block they started is abandoned."""
        self.since.pop(user, None)
        if user not in self.starters or self.state is None or self._block is None:
            return
        self.starters.discard(user)
        now = now_ms()
        self._credit(
            FocusCredit(
                self.room, self.state.timer_id, self.state.block, "abandoned", (user,),
                self.state.work_started_at, now, elapsed_work(self.state, now),
            )
        )  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)
