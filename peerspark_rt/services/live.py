"""Publishing live frames to rooms, on every node (through the broker)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..cluster import envelope
from ..cluster.broker import CONTROL_ROOM, Broker
from ..protocol import Event, Message, ServerFrame, json_encoder


class LiveEvents:
    """What services use to tell connected clients that something changed.

    Frames are encoded once here; every node with members in the room fans the same bytes out.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(self, room: str, frame: ServerFrame) -> None:
        await self._broker.publish(room, envelope.event(json_encoder.encode(frame)))

    async def event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        await self.publish(room, Event(room=room, kind=kind, data=data))

    async def message(self, frame: Message) -> None:
        """A stored chat message; room actors deliver these in sequence order."""
        payload = envelope.message(frame.seq, json_encoder.encode(frame))
        await self._broker.publish(frame.room, payload)

    async def evict(self, room: str, user_id: uuid.UUID) -> None:
        """Remove every socket of `user_id` from `room`, on every node (lost membership)."""
        await self._control({"op": "evict", "room": room, "userId": str(user_id)})

    async def revoke_session(self, session_id: uuid.UUID) -> None:
        """Close every socket opened with this login session, on every node."""
        await self._control({"op": "revoke", "sessionId": str(session_id)})

    async def _control(self, body: dict[str, str]) -> None:
        await self._broker.publish(CONTROL_ROOM, envelope.control(orjson.dumps(body)))
