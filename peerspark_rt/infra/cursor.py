"""Opaque keyset cursors: the sort key of the last row a client saw, base64url-encoded.

Clients pass them back unchanged. A cursor names the listing it belongs to, so one from another
feed (or a hand-edited one) is a 422 naming `cursor`, never a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import msgspec

from ..errors import Invalid

_encoder = msgspec.json.Encoder()


class _Cursor(msgspec.Struct, forbid_unknown_fields=True):
    f: str  # which listing
    k: list[Any]  # the sort key


def encode(listing: str, key: tuple[Any, ...]) -> str:
    values = [
        v.isoformat() if isinstance(v, dt.datetime) else str(v) if isinstance(v, uuid.UUID) else v
        for v in key
    ]
    raw = _encoder.encode(_Cursor(listing, values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(
    cursor: str, listing: str, types: tuple[type, ...], field: str = "cursor"
) -> tuple[Any, ...]:
    """The sort key in `cursor`, converted to `types`; Invalid(field) if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise Invalid(field, "is not a valid cursor") from None
    if parsed.f != listing:
        raise Invalid(field, "belongs to a different listing")
    if len(parsed.k) != len(types):
        raise Invalid(field, "is not a valid cursor")
    out: list[Any] = []
    for value, type_ in zip(parsed.k, types, strict=True):
        try:
            if type_ is dt.datetime:
                converted: Any = dt.datetime.fromisoformat(value)
                if converted.tzinfo is None:
                    raise ValueError
            elif type_ is uuid.UUID:
                converted = uuid.UUID(value)
            elif type_ is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError
                converted = float(value)
            elif type_ is bool:
                if not isinstance(value, bool):
                    raise ValueError
                converted = value
            elif type_ is str:
                if not isinstance(value, str):
                    raise ValueError
                converted = value
            else:  # pragma: no cover - a programming error
                raise TypeError(type_)
        except (ValueError, TypeError, AttributeError):
            raise Invalid(field, "is not a valid cursor") from None
        out.append(converted)
    return tuple(out)
