"""What travels on the broker: one byte saying what the payload is, then the payload.

Most payloads are an encoded server frame that nodes forward to their members without
decoding. Room state (presence, typing, screen share, focus timers) and sequenced messages
carry what the room actors need to keep their state and order; control messages are for the
nodes themselves.
"""

from __future__ import annotations

EVENT = 0x45  # b"E": a frame to forward as is (events, notifications)
MESSAGE = 0x4D  # b"M": 8-byte big-endian room sequence, then the message frame
PRESENCE = 0x50  # b"P": a presence frame
TYPING = 0x54  # b"T": a typing frame
SCREEN = 0x53  # b"S": a screen-share frame
FOCUS = 0x46  # b"F": a focus timer's state after a command (FocusState JSON)
CONTROL = 0x43  # b"C": JSON for the nodes: {"op": "evict"|"revoke", ...}
REPLACE = 0x52  # b"R": a delivered message changed (retracted or restored): 8-byte sequence,
#                 4-byte length of the message frame history now holds, that frame, then the
#                 notice frame for members


def event(frame: bytes) -> bytes:
    return b"E" + frame


def message(seq: int, frame: bytes) -> bytes:
    return b"M" + seq.to_bytes(8, "big") + frame


def state(kind: int, frame: bytes) -> bytes:
    return bytes((kind,)) + frame


def control(body: bytes) -> bytes:
    return b"C" + body


def split_message(payload: bytes) -> tuple[int, bytes]:
    """(seq, frame) of a MESSAGE payload."""
    return int.from_bytes(payload[1:9], "big"), payload[9:]


def replace(seq: int, replacement: bytes, notice: bytes) -> bytes:
    return (
        b"R" + seq.to_bytes(8, "big") + len(replacement).to_bytes(4, "big") + replacement + notice
    )


def split_replace(payload: bytes) -> tuple[int, bytes, bytes]:
    """(seq, replacement message frame, notice frame) of a REPLACE payload."""
    seq = int.from_bytes(payload[1:9], "big")
    n = int.from_bytes(payload[9:13], "big")
    return seq, payload[13 : 13 + n], payload[13 + n :]
