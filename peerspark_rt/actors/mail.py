"""What a room actor's mailbox carries: one small class per kind of message, matched by class.

Everything that changes a room's live state arrives here, from its local sockets (through the
hub), from the broker (other nodes' frames and this node's own publications), and from work the
actor handed off (state loading, presence writes, store fetches), whose results come back as
mail rather than being awaited: an actor never awaits the network.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .connection import Connection

JoinResult = asyncio.Future[str | None]  # None: joined; else an error code for the client


@dataclass(slots=True)
class Wire:
    """A broker payload for this room (an envelope, see cluster.envelope)."""

    payload: bytes


@dataclass(slots=True)
class Join:
    conn: Connection
    since: int | None
    done: JoinResult | None
    # set by the hub when the joiner stopped waiting: the actor then ignores the join
    cancelled: bool = False


@dataclass(slots=True)
class Leave:
    conn: Connection
    done: asyncio.Future[None] | None
    lost: bool = False


@dataclass(slots=True)
class Depart:
    """A departing user's grace period is over."""

    user_id: str


@dataclass(slots=True)
class TypingFrom:
    conn: Connection
    state: str


@dataclass(slots=True)
class ShareFrom:
    conn: Connection
    sharing: bool
    stream_id: str | None


@dataclass(slots=True)
class Resume:
    conn: Connection
    since: int


@dataclass(slots=True)
class ReplayMore:
    """The socket drained: send it the next part of its replay."""

    conn: Connection


@dataclass(slots=True)
class ReplayPage:
    """Stored messages fetched for a socket's replay (None: the fetch failed)."""

    conn: Connection
    frames: list[tuple[int, bytes]] | None


@dataclass(slots=True)
class GapDue:
    """Time to fetch what is missing between the last delivered message and what is known."""


@dataclass(slots=True)
class GapFill:
    frames: list[tuple[int, bytes]] | None  # None: the fetch failed
    upto: int


@dataclass(slots=True)
class Position:
    """The room's latest stored sequence, as the store says (the periodic position check)."""

    seq: int


@dataclass(slots=True)
class Loaded:
    last_seq: int
    presence: dict[str, str]
    focus: bytes | None = None  # the stored focus timer (a FocusState), if any
    focus_known: bool = True  # False: it could not be read (a user room goes on without it)


@dataclass(slots=True)
class LoadFailed:
    reason: str


@dataclass(slots=True)
class Reload:
    pass


@dataclass(slots=True)
class PresenceGone:
    """The user's last device anywhere left the room (the cluster registry said so)."""

    user_id: str
    username: str


@dataclass(slots=True)
class RefreshPresence:
    """Read who is present again (the room's subscription has just taken effect, or the link to
    the other nodes was lost: announcements made before were not heard)."""


@dataclass(slots=True)
class PresenceSnapshot:
    presence: dict[str, str] | None  # None: the registry did not answer
    asked: int  # the room's count of presence announcements heard when the read was asked


@dataclass(slots=True)
class TypingExpiry:
    pass


@dataclass(slots=True)
class NewsDue:
    """Presence news held back for the window is due out."""


@dataclass(slots=True)
class FocusDue:
    """A focus timer's phase ends now."""


@dataclass(slots=True)
class FocusReload:
    """Read the focus timer from the store again (a publication may have been missed)."""


@dataclass(slots=True)
class FocusLoaded:
    payload: bytes | None
    known: bool


@dataclass(slots=True)
class Evict:
    user_id: str


@dataclass(slots=True)
class Overflowed:
    """The socket fell behind and its queued room traffic was dropped: stop its replay and
    tell it to resume."""

    conn: Connection


@dataclass(slots=True)
class Reassert:
    """Re-register local presence (after this node was presumed dead by the others)."""


@dataclass(slots=True)
class Idle:
    pass


@dataclass(slots=True)
class Stop:
    pass


Mail = (
    Wire
    | Join
    | Leave
    | Depart
    | TypingFrom
    | ShareFrom
    | Resume
    | ReplayMore
    | ReplayPage
    | GapDue
    | GapFill
    | Position
    | Loaded
    | LoadFailed
    | Reload
    | PresenceGone
    | RefreshPresence
    | PresenceSnapshot
    | TypingExpiry
    | NewsDue
    | FocusDue
    | FocusReload
    | FocusLoaded
    | Evict
    | Overflowed
    | Reassert
    | Idle
    | Stop
)
