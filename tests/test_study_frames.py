"""The live review's frames in every wire format: JSON as published, MessagePack decoded back
to the same frame, and the Socket.IO events `session:card` / `session:card_tally`."""

from __future__ import annotations

import json

import msgspec

from peerspark_rt import protocol
from peerspark_rt.sio_protocol import room_packet

CARD = protocol.Card(
    room="session:8c1d",
    session_id="8c1d",
    deck_id="3e7a",
    round=1,
    total=2,
    status="showing",
    card=protocol.CardShown("b21f", "3e7a", "2x = 4", "x = 2", ["algebra"]),
)
TALLY = protocol.CardTally(
    room="session:8c1d", round=1, card_id="b21f", again=1, hard=0, good=3, easy=1, answered=5
)


def test_card_frames_round_trip_in_json_and_msgpack() -> None:
    for frame in (CARD, TALLY, msgspec.structs.replace(CARD, status="ended", card=None)):
        payload = protocol.json_encoder.encode(frame)
        assert protocol.server_json_decoder.decode(payload) == frame
        packed = protocol.msgpack_encoder.encode(protocol.server_json_decoder.decode(payload))
        assert protocol.server_msgpack_decoder.decode(packed) == frame
    body = json.loads(protocol.json_encoder.encode(CARD))
    assert body["t"] == "card"
    assert body["card"]["front"] == "2x = 4"
    assert json.loads(protocol.json_encoder.encode(TALLY))["t"] == "card_tally"


def test_card_frames_as_socketio_events() -> None:
    name, data = json.loads(room_packet(protocol.json_encoder.encode(CARD))[2:])
    assert name == "session:card"
    assert data["sessionId"] == "8c1d"
    assert data["card"]["id"] == "b21f"
    assert (data["round"], data["total"], data["status"]) == (1, 2, "showing")
    name, data = json.loads(room_packet(protocol.json_encoder.encode(TALLY))[2:])
    assert name == "session:card_tally"
    assert (data["sessionId"], data["good"], data["answered"]) == ("8c1d", 3, 5)
