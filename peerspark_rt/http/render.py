"""Reading requests and writing responses: typed bodies and queries in, JSON out.

Every input problem becomes an `AppError` naming the field, so the error middleware renders
it in the one error shape.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from ..services import validation

T = TypeVar("T")

MAX_JSON_BODY = 1024 * 1024
_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(obj), status=status, content_type="application/json", headers=headers
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def convert(data: Any, type_: type[T], *, strict: bool = True) -> T:
    return validation.convert(data, type_, strict=strict)


async def read_body(request: web.Request, type_: type[T], *, allow_empty: bool = False) -> T:
    """Decode the JSON body into `type_`: 400 when it is not JSON, 422 naming the field when a
    field is missing or wrong, 413 when too large."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise PayloadTooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes")
    if request.body_exists and request.content_type not in ("application/json", ""):
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise PayloadTooLarge(f"JSON bodies are limited to {MAX_JSON_BODY} bytes")
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise BadRequest("a JSON body is required", code="invalid_json")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise validation.invalid_from(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None


def read_query(request: web.Request, type_: type[T], *, lists: tuple[str, ...] = ()) -> T:
    """Query parameters into `type_` ("10" -> 10, "true" -> True). Parameters named in `lists`
    may repeat or be comma-separated."""
    data: dict[str, Any] = {}
    for key in request.query:
        if key in lists:
            values = [v for raw in request.query.getall(key) for v in raw.split(",") if v]
            data[key] = values
        else:
            data[key] = request.query[key]
    return validation.convert(data, type_, strict=False)


def path_id(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A UUID from the path. A malformed id names nothing that exists, so it is a 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"{what} not found") from None
