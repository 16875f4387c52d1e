"""Publishing live frames to rooms, on every node (through the broker)."""

from __future__ import annotations

from typing import Any

from ..cluster.broker import Broker
from ..protocol import Event, ServerFrame, json_encoder


class LiveEvents:
    """What services use to tell connected clients that something changed.

    Frames are encoded once here; every node with members in the room fans the same bytes out.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(self, room: str, frame: ServerFrame) -> None:
        await self._broker.publish(room, json_encoder.encode(frame))

    async def event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        await self.publish(room, Event(room=room, kind=kind, data=data))
