"""Publishing live frames to rooms, on every node (through the broker)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from ..cluster import envelope
from ..cluster.broker import CONTROL_ROOM, Broker
from ..protocol import Event, FocusUpdate, Message, Retracted, ServerFrame, json_encoder


class LiveEvents:
    """What services use to tell connected clients that something changed.

    Frames are encoded once here; every node with members in the room fans the same bytes out.
    Publishing never waits for the network (these stay coroutines so callers need not care).
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(self, room: str, frame: ServerFrame) -> None:
        self._broker.publish(room, envelope.event(json_encoder.encode(frame)))

    async def event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        await self.publish(room, Event(room=room, kind=kind, data=data))

    async def message(self, frame: Message) -> None:
        """A stored chat message; room actors deliver these in sequence order."""
        payload = envelope.message(frame.seq, json_encoder.encode(frame))
        self._broker.publish(frame.room, payload)

    async def replace(self, frame: Message, notice: Retracted | Event) -> None:
        """A delivered message changed (retracted, restored): rooms keep `frame` in its place
        for resumes, and members get `notice`."""
        self._broker.publish(
            frame.room,
            envelope.replace(frame.seq, json_encoder.encode(frame), json_encoder.encode(notice)),
        )

    async def focus(self, frame: FocusUpdate) -> None:
        """A focus timer's new state: every node's room takes it (by version) and tells its
        members."""
        payload = envelope.state(envelope.FOCUS, json_encoder.encode(frame))
        self._broker.publish(frame.room, payload)

    async def evict(self, room: str, user_id: uuid.UUID) -> None:
        """Remove every socket of `user_id` from `room`, on every node (lost membership)."""
        await self._control({"op": "evict", "room": room, "userId": str(user_id)})

    async def revoke_session(self, session_id: uuid.UUID) -> None:
        """Close every socket opened with this login session, on every node."""
        await self._control({"op": "revoke", "sessionId": str(session_id)})

    async def _control(self, body: dict[str, str]) -> None:
        self._broker.publish(CONTROL_ROOM, envelope.control(orjson.dumps(body)))


# the application's key for what this module provides (typed app state)
LIVE = web.AppKey("live", LiveEvents)
