"""The Socket.IO wire format (Engine.IO 4 / Socket.IO 5 text packets) over the live protocol.

A second codec for the same frames, not a second protocol: clients written against the spec's
Socket.IO events (`session:join`, `session:message`, `typing:start`, `notification:new`, ...)
are translated here into the `protocol` Structs the realtime core handles, and what the core
sends is translated back into the spec's event names and payloads. PROTOCOL.md ("Socket.IO")
has the table.

* Room traffic (`room_packet`) is stateless: a room actor turns each JSON payload into one
  `42["event",{...}]` packet once and hands the same bytes to every Socket.IO member.
* Replies (`SioReplies`) belong to one socket: a request that came with an acknowledgement id
  gets its answer (`joined`, `ack`, `error`, `left`) as `43<id>[{...}]`; without one it is an
  event like any other.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .protocol import (
    ADMIN_ROOM,
    Ack,
    Acked,
    Card,
    CardTally,
    ClientFrame,
    Error,
    Event,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Notification,
    Pong,
    Presence,
    Resync,
    Retracted,
    ScreenShare,
    ScreenShareEvent,
    Send,
    Sender,
    TypingEvent,
    server_json_decoder,
)
from .protocol import Typing as TypingFrame

# Engine.IO packet types (the first character of every text frame)
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP = "0123456"
# Socket.IO packet types (the character after an Engine.IO message's "4")
SIO_CONNECT, SIO_DISCONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR = "01234"
SIO_BINARY_EVENT, SIO_BINARY_ACK = "56"

PING = b"2"
PONG = b"3"
MAX_ACK_ID = 2**53  # acknowledgement ids are JavaScript numbers

_encoder = msgspec.json.Encoder()
# what each kind of room calls its id in payloads
_ID_FIELD = {"session": "sessionId", "pod": "podId", "user": "userId"}


class SioError(Exception):
    """A packet the server cannot use; `code` is the live protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- packets


def open_packet(sid: str, ping_interval: float, ping_timeout: float, max_payload: int) -> str:
    """Engine.IO's handshake: the websocket is the only transport (no upgrades)."""
    body = _encoder.encode(
        {
            "sid": sid,
            "upgrades": [],
            "pingInterval": int(ping_interval * 1000),
            "pingTimeout": int(ping_timeout * 1000),
            "maxPayload": max_payload,
        }
    )
    return EIO_OPEN + body.decode()


def connected_packet(sid: str) -> bytes:
    return b"40" + _encoder.encode({"sid": sid})


def connect_error_packet(message: str, code: str | None = None, namespace: str = "/") -> bytes:
    """CONNECT_ERROR: the clients raise it as `connect_error` (JS: `err.message`, `err.data`)."""
    body: dict[str, Any] = {"message": message}
    if code is not None:
        body["data"] = {"code": code}
    prefix = b"44" if namespace == "/" else f"44{namespace},".encode()
    return prefix + _encoder.encode(body)


def event_packet(name: str, data: Any) -> bytes:
    return b"42" + _encoder.encode((name, data))


def ack_packet(ack_id: int, data: Any) -> bytes:
    return b"43" + str(ack_id).encode() + _encoder.encode((data,))


@dataclass(frozen=True, slots=True)
class SioPacket:
    """A Socket.IO packet from a client (inside an Engine.IO message)."""

    kind: str  # SIO_CONNECT, SIO_EVENT, ...
    namespace: str
    ack: int | None
    data: Any


def parse_packet(text: str) -> SioPacket:
    """Parse the Socket.IO packet of an Engine.IO message (`text` without its leading "4")."""
    if not text:
        raise SioError("bad_frame", "empty Socket.IO packet")
    kind = text[0]
    if kind not in "0123456":
        raise SioError("bad_frame", f"unknown Socket.IO packet type {kind!r}")
    if kind in (SIO_BINARY_EVENT, SIO_BINARY_ACK):
        raise SioError("invalid_frame", "binary attachments are not supported: send JSON arguments")
    i = 1
    namespace = "/"
    if text.startswith("/", i):
        comma = text.find(",", i)
        end = comma if comma != -1 else len(text)
        namespace = text[i:end]
        i = end + 1 if comma != -1 else end
    start = i
    while i < len(text) and text[i].isdigit():
        i += 1
    ack = None
    if i > start:
        if i - start > 16 or int(text[start:i]) >= MAX_ACK_ID:
            raise SioError("invalid_frame", "the acknowledgement id is too large")
        ack = int(text[start:i])
    data: Any = None
    if i < len(text):
        try:
            data = msgspec.json.decode(text[i:])
        except msgspec.DecodeError:
            raise SioError("bad_frame", "the packet's payload is not valid JSON") from None
        except RecursionError:
            raise SioError("invalid_frame", "the packet is nested too deeply") from None
    return SioPacket(kind, namespace, ack, data)


# --------------------------------------------------------------------------- client events

_MessageType = Literal["text", "file", "system"]


class _Args(msgspec.Struct, rename="camel"):
    pass


class _SessionArgs(_Args):
    session_id: str


class _JoinArgs(_Args):
    session_id: str
    since: int | None = None
    enrol: bool = False


class _MessageArgs(_Args):
    session_id: str
    message: str = ""
    type: _MessageType = "text"
    cid: str | None = None
    file_url: str | None = None
    metadata: dict[str, Any] | None = None


class _ShareArgs(_Args):
    session_id: str
    is_sharing: bool
    stream_id: str | None = None


class _ReadArgs(_Args):
    session_id: str
    seq: int


class _PodArgs(_Args):
    pod_id: str


def _args(event: str, args: list[Any], kind: type[Any], shorthand: str | None) -> Any:
    """The event's one argument as `kind`; `shorthand` names the field a bare string fills
    (the spec's `socket.emit('session:join', sessionId)`)."""
    if not args:
        raise SioError("invalid_frame", f"{event}: an argument is required")
    value = args[0]
    if shorthand is not None and isinstance(value, str):
        value = {shorthand: value}
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        # msgspec says "at `$.sessionId`": name the event instead of `$`
        raise SioError("invalid_frame", f"{event}: {str(exc).replace('`$.', '`')}") from None


def _session(ident: str) -> str:
    return f"session:{ident}"


def client_frame(event: str, args: list[Any]) -> ClientFrame:
    """The live protocol frame a client's Socket.IO event stands for."""
    match event:
        case "session:join":
            join = _args(event, args, _JoinArgs, "sessionId")
            return Join(room=_session(join.session_id), since=join.since, enrol=join.enrol)
        case "session:leave":
            return Leave(room=_session(_args(event, args, _SessionArgs, "sessionId").session_id))
        case "session:message":
            msg = _args(event, args, _MessageArgs, None)
            return Send(
                room=_session(msg.session_id),
                # a message without the client's id is stored once per emit (no retry safety)
                cid=msg.cid if msg.cid is not None else f"sio-{secrets.token_hex(8)}",
                body=msg.message,
                kind=msg.type,
                file_url=msg.file_url,
                meta=msg.metadata,
            )
        case "session:screen_share":
            share = _args(event, args, _ShareArgs, None)
            return ScreenShare(
                room=_session(share.session_id), sharing=share.is_sharing, stream_id=share.stream_id
            )
        case "typing:start" | "typing:stop":
            ref = _args(event, args, _SessionArgs, "sessionId")
            return TypingFrame(room=_session(ref.session_id), state=event[7:])  # type: ignore[arg-type]
        case "session:read":
            read = _args(event, args, _ReadArgs, None)
            return Ack(room=_session(read.session_id), seq=read.seq)
        case "pod:join":
            return Join(room=f"pod:{_args(event, args, _PodArgs, 'podId').pod_id}")
        case "pod:leave":
            return Leave(room=f"pod:{_args(event, args, _PodArgs, 'podId').pod_id}")
        case "admin:join":  # the spec's admin dashboard (platform admins only)
            return Join(room=ADMIN_ROOM)
        case "admin:leave":
            return Leave(room=ADMIN_ROOM)
    raise SioError("unknown_type", f"unknown event {event[:64]!r}; see PROTOCOL.md, Socket.IO")


# --------------------------------------------------------------------------- server events


class SioMessage(msgspec.Struct, rename="camel", omit_defaults=True):
    """`session:message`: the spec's fields (sessionId, message, type) and the live ones."""

    session_id: str
    seq: int
    id: str
    user_id: str
    username: str
    sender: Sender
    message: str
    type: str
    created_at: str
    cid: str | None = None
    file_url: str | None = None
    metadata: dict[str, Any] | None = None
    retracted: bool = False


def _room_ref(room: str) -> dict[str, Any]:
    kind, _, ident = room.partition(":")
    field = _ID_FIELD.get(kind)
    return {field: ident} if field is not None and ident else {"room": room}


def _kind(room: str) -> str:
    return room.partition(":")[0]


# events whose spec name is not `<room kind>:<event kind>`
_FEED_INTERACTIONS = {
    "post_like_count": ("like", "likeCount"),
    "comment_created": ("comment", "commentCount"),
    "comment_deleted": ("comment", "commentCount"),
}


def _event(frame: Event) -> tuple[str, dict[str, Any]]:
    kind = frame.kind
    if frame.room == ADMIN_ROOM and kind == "metrics":
        return "analytics:event", frame.data
    if kind == "post_created":
        return "feed:new_post", frame.data
    interaction = _FEED_INTERACTIONS.get(kind)
    if interaction is not None:
        what, count = interaction
        data = {**_room_ref(frame.room), **frame.data, "type": what}
        data["count"] = frame.data.get(count)
        return "feed:post_interaction", data
    if kind in ("post_updated", "post_deleted"):
        return f"feed:{kind}", {**_room_ref(frame.room), **frame.data}
    if kind == "comment_like_count":
        data = {**_room_ref(frame.room), **frame.data, "type": "like"}
        data["count"] = frame.data.get("likeCount")
        return "feed:comment_interaction", data
    if kind == "unread_count":
        return "notification:unread_count", frame.data
    return f"{_kind(frame.room)}:{kind}", {**_room_ref(frame.room), **frame.data}


def server_event(frame: Any) -> tuple[str, Any] | None:
    """(event name, payload) for a frame of the live protocol; None for those that have none
    (pong: Engine.IO has its own heartbeat)."""
    match frame:
        case Message():
            return "session:message", SioMessage(
                session_id=frame.room.partition(":")[2],
                seq=frame.seq,
                id=frame.id,
                user_id=frame.sender.id,
                username=frame.sender.username,
                sender=frame.sender,
                message=frame.body,
                type=frame.kind,
                created_at=frame.ts,
                cid=frame.cid,
                file_url=frame.file_url,
                metadata=frame.meta,
                retracted=frame.retracted,
            )
        case Presence():
            state = "joined" if frame.state == "join" else "left"
            return f"{_kind(frame.room)}:user_{state}", {
                **_room_ref(frame.room),
                "userId": frame.user_id,
                "username": frame.username,
            }
        case TypingEvent():
            return f"typing:{frame.state}", {
                **_room_ref(frame.room),
                "userId": frame.user_id,
                "username": frame.username,
            }
        case ScreenShareEvent():
            data = {
                **_room_ref(frame.room),
                "userId": frame.user_id,
                "username": frame.username,
                "isSharing": frame.sharing,
            }
            if frame.stream_id is not None:
                data["streamId"] = frame.stream_id
            return "session:screen_share", data
        case Event():
            return _event(frame)
        case Notification():
            data = msgspec.to_builtins(frame)
            del data["t"], data["room"]
            return "notification:new", {**data, "isRead": False}
        case Retracted():
            return "session:message_retracted", {
                **_room_ref(frame.room),
                "seq": frame.seq,
                "id": frame.id,
                "reason": frame.reason,
            }
        case Joined():
            return f"{_kind(frame.room)}:joined", _joined(frame)
        case Left():
            return f"{_kind(frame.room)}:left", _room_ref(frame.room)
        case Acked():
            return "session:message_ack", _acked(frame)
        case Error():
            return "error", _error(frame)
        case Resync():
            data = {"reason": frame.reason}
            if frame.room is not None:
                data.update(_room_ref(frame.room))
            return f"{_kind(frame.room or 'session:')}:resync", data
        case Card() | CardTally():
            data = msgspec.to_builtins(frame)
            del data["t"], data["room"]
            name = "session:card" if isinstance(frame, Card) else "session:card_tally"
            return name, {**_room_ref(frame.room), **data}
        case Pong():
            return None
    return None


def room_packet(payload: bytes) -> bytes:
    """The Socket.IO event packet for a room's JSON frame (built once per room message)."""
    named = server_event(server_json_decoder.decode(payload))
    if named is None:
        return b""
    return event_packet(*named)


def _joined(frame: Joined) -> dict[str, Any]:
    return {
        **_room_ref(frame.room),
        "lastSeq": frame.last_seq,
        "presence": frame.presence,
        "typing": frame.typing,
        "screenShares": frame.screen_shares,
    }


def _acked(frame: Acked) -> dict[str, Any]:
    return {
        **_room_ref(frame.room),
        "cid": frame.cid,
        "seq": frame.seq,
        "id": frame.id,
        "duplicate": frame.duplicate,
    }


def _error(frame: Error) -> dict[str, Any]:
    data: dict[str, Any] = {"code": frame.code, "message": frame.message}
    if frame.room is not None:
        data.update(_room_ref(frame.room))
    if frame.ref is not None:
        data["ref"] = frame.ref
    if frame.held is not None:
        data["held"] = frame.held
    return data


# --------------------------------------------------------------------------- replies


@dataclass(slots=True)
class _Request:
    """The request a socket is waiting on (one at a time: only chat messages overlap)."""

    ack: int | None  # None: answer nothing (the automatic join of the user's own room)
    frame: Any  # the live frame it became (None when the packet could not be used)
    answered: bool = False


# errors a room sends on its own, never as the answer to a request
_UNSOLICITED = frozenset({"removed", "resume_too_old", "resume_failed"})


class SioReplies:
    """One Socket.IO socket's replies: routes the core's control frames to the
    acknowledgement callback of the request they answer, else emits them as events."""

    __slots__ = ("_request", "_sends")

    def __init__(self) -> None:
        self._request: _Request | None = None
        # cid -> acknowledgement ids of chat messages waiting for their commit
        self._sends: dict[str, deque[int]] = {}

    def begin(self, ack: int | None, frame: Any, *, silent: bool = False) -> None:
        """A request is about to be handled; its answer goes to `ack`."""
        if type(frame) is Send:
            if ack is not None:
                self._sends.setdefault(frame.cid, deque()).append(ack)
            return
        if ack is not None or silent:
            self._request = _Request(ack, frame)

    def end(self) -> bytes | None:
        """The request was handled: an acknowledgement for one that had no answer frame
        (typing, screen share, read markers succeed silently)."""
        request, self._request = self._request, None
        if request is None or request.answered or request.ack is None:
            return None
        return ack_packet(request.ack, {"ok": True})

    def control(self, frame: Any) -> bytes | None:
        """The packet for one control frame (joined, ack, error, left, resync, pong)."""
        matched, ack = self._answering(frame)
        if matched:
            return None if ack is None else ack_packet(ack, _ack_body(frame))
        named = server_event(frame)
        return None if named is None else event_packet(*named)

    def _answering(self, frame: Any) -> tuple[bool, int | None]:
        """(True, its ack id) when `frame` answers a request waiting for it."""
        kind = type(frame)
        if kind is Acked or (kind is Error and frame.ref is not None):
            cid = frame.cid if kind is Acked else frame.ref
            waiting = self._sends.get(cid)
            if not waiting:
                return False, None
            ack = waiting.popleft()
            if not waiting:
                del self._sends[cid]
            return True, ack
        request = self._request
        if request is None or request.answered:
            return False, None
        asked = request.frame
        room = getattr(asked, "room", None)
        if kind is Error:
            if (
                request.ack is None  # the silent join's failure is told as an event
                or frame.code in _UNSOLICITED
                or (frame.room is not None and frame.room != room)
            ):
                return False, None
        elif not (
            (kind is Joined and type(asked) is Join and frame.room == room)
            or (kind is Left and type(asked) is Leave and frame.room == room)
        ):
            return False, None
        request.answered = True
        return True, request.ack


def _ack_body(frame: Any) -> dict[str, Any]:
    if type(frame) is Error:
        return {"ok": False, **_error(frame)}
    if type(frame) is Joined:
        return {"ok": True, **_joined(frame)}
    if type(frame) is Acked:
        return {"ok": True, **_acked(frame)}
    if type(frame) is Left:
        return {"ok": True, **_room_ref(frame.room)}
    return {"ok": True}
