"""Opaque keyset-pagination cursors: (timestamp, id) of the last row of a page."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

from ..errors import Invalid


def encode(at: dt.datetime, ident: uuid.UUID) -> str:
    raw = f"{at.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, field: str = "cursor") -> tuple[dt.datetime, uuid.UUID]:
    """Raises Invalid naming `field` when the cursor was not made by `encode`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, ident = raw.partition("|")
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise Invalid(field, "is not a cursor this server returned") from None
