"""The websocket wire protocol: one tagged union per direction, built from msgspec Structs.

Every frame is an object whose `t` field names its type. Browsers use JSON text frames;
clients that connect with `?format=msgpack` use MessagePack binary frames. Both come from the
same Structs. PROTOCOL.md documents each frame with examples.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

MAX_BODY_CHARS = 8000
MAX_AI_BODY_CHARS = 32000  # an assistant's answer posted to a room (kind "ai")
ROOM_KINDS = ("session", "pod", "user", "admin")
ADMIN_ROOM = "admin:dashboard"  # platform admins' live counters (README, "The admin dashboard")


class _Frame(msgspec.Struct, tag_field="t", rename="camel", omit_defaults=True):
    pass


# --------------------------------------------------------------------------- client -> server


class Join(_Frame, tag="join", forbid_unknown_fields=True):
    """Enter a room. `since`: the last sequence seen, to receive every later message.
    `enrol`: (session rooms) take part in the session first, as POST /api/sessions/{id}/join
    does, when not yet a participant; without it a non-participant is refused."""

    room: str
    since: int | None = None
    enrol: bool = False


class Leave(_Frame, tag="leave", forbid_unknown_fields=True):
    room: str


class Send(_Frame, tag="send", forbid_unknown_fields=True):
    """Post a message to a session room. `cid` is the client's id for it: a retry with the
    same cid is stored and delivered once."""

    room: str
    cid: str
    body: str = ""
    kind: Literal["text", "file", "system"] = "text"
    file_url: str | None = None
    meta: dict[str, Any] | None = None


class Typing(_Frame, tag="typing", forbid_unknown_fields=True):
    room: str
    state: Literal["start", "stop"]


class ScreenShare(_Frame, tag="screen_share", forbid_unknown_fields=True):
    room: str
    sharing: bool
    stream_id: str | None = None


class Ack(_Frame, tag="ack", forbid_unknown_fields=True):
    """The client has processed a room's messages up to `seq`."""

    room: str
    seq: int


class Ping(_Frame, tag="ping", forbid_unknown_fields=True):
    id: str | int | None = None


class Resume(_Frame, tag="resume", forbid_unknown_fields=True):
    """Ask again for everything after `since` in a room already joined."""

    room: str
    since: int


class Focus(_Frame, tag="focus", forbid_unknown_fields=True):
    """Command a room's focus timer (a session room's organizer; anyone in their own user
    room). `start` begins a new timer with the durations given (seconds), replacing any other;
    `pause`, `resume`, `skip` (end the current phase now, uncounted) and `stop` act on the
    running one."""

    room: str
    op: Literal["start", "pause", "resume", "skip", "stop"]
    work: int = 1500
    short_break: int = 300
    long_break: int = 900
    long_every: int = 4
    blocks: int = 4


ClientFrame = Join | Leave | Send | Typing | ScreenShare | Ack | Ping | Resume | Focus


# --------------------------------------------------------------------------- server -> client


class Member(msgspec.Struct, rename="camel", omit_defaults=True):
    user_id: str
    username: str


class Sender(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    username: str


class FocusState(msgspec.Struct, rename="camel", omit_defaults=False):
    """A room's focus timer. Times are Unix epoch milliseconds; durations are seconds. The
    phases follow from the last command alone (work, then a short break, a long one after
    every `longEvery` blocks, until `blocks` are done), so every node shows the same state."""

    timer_id: str
    status: Literal["running", "paused", "done", "stopped"]
    phase: Literal["work", "break", "long_break"]
    block: int  # the current work block (or the one before this break), from 1
    blocks: int
    work: int
    short_break: int
    long_break: int
    long_every: int
    ends_at: int  # when the current phase ends (running)
    remaining: int  # milliseconds left in the phase (paused)
    phase_started_at: int
    work_started_at: int  # when the current (or last) work block began
    version: int  # one more with every command
    by: str  # who gave the last command


class Joined(_Frame, tag="joined", omit_defaults=False):
    room: str
    last_seq: int = 0
    presence: list[Member] = []
    typing: list[Member] = []
    screen_shares: list[ScreenShareState] = []
    focus: FocusState | None = None


class Left(_Frame, tag="left"):
    room: str


class Message(_Frame, tag="message"):
    room: str
    seq: int
    id: str
    sender: Sender
    kind: str
    body: str
    ts: str
    cid: str | None = None
    file_url: str | None = None
    meta: dict[str, Any] | None = None
    # removed by moderation after it was delivered: body, fileUrl and meta are gone
    retracted: bool = False


class Retracted(_Frame, tag="retracted"):
    """A delivered message was removed (automated moderation flagged it): clients replace
    it with a notice. `reason` says why."""

    room: str
    seq: int
    id: str
    reason: str


class Presence(_Frame, tag="presence"):
    room: str
    user_id: str
    username: str
    state: Literal["join", "leave"]


class TypingEvent(_Frame, tag="typing"):
    room: str
    user_id: str
    username: str
    state: Literal["start", "stop"]


class ScreenShareState(msgspec.Struct, rename="camel", omit_defaults=True):
    user_id: str
    username: str
    stream_id: str | None = None


class ScreenShareEvent(_Frame, tag="screen_share"):
    room: str
    user_id: str
    username: str
    sharing: bool
    stream_id: str | None = None


class Notification(_Frame, tag="notification"):
    room: str
    id: str
    type: str
    title: str
    created_at: str
    message: str | None = None
    action_url: str | None = None
    metadata: dict[str, Any] | None = None
    unread_count: int | None = None


class Event(_Frame, tag="event"):
    """A live change in the product (a new post, a like count, a comment...)."""

    room: str
    kind: str
    data: dict[str, Any]


class Acked(_Frame, tag="ack", omit_defaults=False):
    room: str
    cid: str
    seq: int
    id: str
    duplicate: bool = False


class FocusUpdate(_Frame, tag="focus"):
    """The room's focus timer changed: a command (`started`, `paused`, `resumed`, `skipped`,
    `stopped`), a phase that ended by itself (`phase`, `done`), or the state as loaded."""

    room: str
    reason: str
    timer: FocusState | None = None


class CardShown(msgspec.Struct, rename="camel", omit_defaults=False):
    id: str
    deck_id: str
    front: str
    back: str
    tags: list[str]
    image_url: str | None = None  # a signed link to the card's image, valid for a while


class Card(_Frame, tag="card", omit_defaults=False):
    """A live review in a session room: the card everyone answers now (`status` "showing",
    round `round` of `total`), or the end of the review ("ended", no card)."""

    room: str
    session_id: str
    deck_id: str
    round: int
    total: int
    status: Literal["showing", "ended"]
    card: CardShown | None = None


class CardTally(_Frame, tag="card_tally", omit_defaults=False):
    """How the room answered the current card so far (one answer per member)."""

    room: str
    round: int
    card_id: str
    again: int
    hard: int
    good: int
    easy: int
    answered: int


class Error(_Frame, tag="error"):
    code: str
    message: str
    room: str | None = None
    ref: str | None = None
    # code held_for_review: the held item {id, status, reason, rule, categories}
    held: dict[str, Any] | None = None


class Pong(_Frame, tag="pong"):
    id: str | int | None = None


class Resync(_Frame, tag="resync"):
    """The server dropped frames for this socket (it fell behind): resume from your last seq."""

    room: str | None = None
    reason: str = "slow_consumer"


ServerFrame = (
    Joined
    | Left
    | Message
    | Retracted
    | Presence
    | TypingEvent
    | ScreenShareEvent
    | Notification
    | Event
    | FocusUpdate
    | Card
    | CardTally
    | Acked
    | Error
    | Pong
    | Resync
)


# --------------------------------------------------------------------------- codecs, built once

json_encoder = msgspec.json.Encoder()
msgpack_encoder = msgspec.msgpack.Encoder()
client_json_decoder = msgspec.json.Decoder(ClientFrame)
client_msgpack_decoder = msgspec.msgpack.Decoder(ClientFrame)
server_json_decoder = msgspec.json.Decoder(ServerFrame)
server_msgpack_decoder = msgspec.msgpack.Decoder(ServerFrame)


def parse_room(room: str) -> tuple[str, str] | None:
    """('session', '<uuid>') for 'session:<uuid>', or None when malformed."""
    kind, sep, ident = room.partition(":")
    if not sep or kind not in ROOM_KINDS or not ident or len(room) > 64:
        return None
    return kind, ident


# Close codes (RFC 6455 private range 4000-4999), documented in PROTOCOL.md.
CLOSE_SESSION_REVOKED = 4003  # the login session was logged out or deleted
CLOSE_SLOW_CONSUMER = 4008  # the socket fell too far behind and was dropped
CLOSE_TOO_MANY_ERRORS = 4009  # too many malformed frames in a row
CLOSE_GOING_AWAY = 1001  # RFC 6455: the node is shutting down; reconnect elsewhere
# The reason sent with 1001 when a node stops (a rolling restart, a scale-down): reconnect at
# once through the load balancer and resume with `since`. Clients match on the "restart:"
# prefix; what follows it is for people.
RESTART_REASON = "restart: reconnect"
