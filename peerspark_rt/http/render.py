"""Reading requests and writing responses: typed bodies and queries in, JSON out.

Every input problem becomes an `AppError` naming the field, so the error middleware renders
it in the one error shape.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..config import SETTINGS
from ..errors import BadRequest, NotFound, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from ..infra import validation

T = TypeVar("T")
R = TypeVar("R")

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


async def body_piece(request: web.Request, size: int = 64 * 1024) -> bytes:
    """The next piece of the body (b"" at its end), waiting at most HTTP_BODY_TIMEOUT for it:
    a client that stops sending half-way gets a 408 instead of holding the handler forever."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].http_body_timeout):
            return await request.content.read(size)
    except TimeoutError:
        raise RequestTimeout("the request body stopped arriving") from None


async def read_whole(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body however it arrives (in many TCP pieces, chunked), at most `limit` bytes:
    413 the moment it is known to be larger."""
    too_large = f"{what} are limited to {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(too_large)
    body = bytearray()
    while piece := await body_piece(request):
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(body)


_MALFORMED_MULTIPART = (ValueError, RuntimeError, LookupError, HttpProcessingError)


class Form:
    """A multipart body read part by part. A body without a usable boundary, or that breaks
    the format half-way, is a 400 naming `field`, never an exception escaping the handler."""

    def __init__(self, request: web.Request, reader: MultipartReader, field: str) -> None:
        self._request = request
        self._reader = reader
        self._field = field

    @classmethod
    def open(cls, request: web.Request, field: str) -> Form:
        if not request.content_type.startswith("multipart/"):
            raise UnsupportedMediaType(
                f"send a multipart/form-data body with a field named {field!r}",
                details=[{"field": field, "reason": "expected multipart/form-data"}],
            )
        try:
            reader = MultipartReader(request.headers, request.content)
        except _MALFORMED_MULTIPART:
            raise cls._malformed(field, "the Content-Type names no usable boundary") from None
        return cls(request, reader, field)

    @staticmethod
    def _malformed(field: str, why: str) -> BadRequest:
        return BadRequest(
            f"not a usable multipart/form-data body: {why}",
            code="invalid_multipart",
            details=[{"field": field, "reason": why}],
        )

    async def _guarded(self, step: Awaitable[R]) -> R:
        try:
            async with asyncio.timeout(self._request.app[SETTINGS].http_body_timeout):
                return await step
        except TimeoutError:
            raise RequestTimeout("the request body stopped arriving") from None
        except _MALFORMED_MULTIPART:
            raise self._malformed(self._field, "the body does not follow its boundary") from None

    async def next_part(self) -> BodyPartReader | None:
        """The next part that is a plain field or file (nested multiparts are skipped)."""
        while True:
            part = await self._guarded(self._reader.next())
            if part is None or isinstance(part, BodyPartReader):
                return part
            await self._guarded(part.release())

    async def piece(self, part: BodyPartReader, size: int = 64 * 1024) -> bytes:
        """The next piece of a part's raw content (b"" at its end)."""
        return await self._guarded(part.read_chunk(size))

    async def skip(self, part: BodyPartReader) -> None:
        await self._guarded(part.release())


async def read_body(request: web.Request, type_: type[T], *, allow_empty: bool = False) -> T:
    """Decode the JSON body into `type_`: 400 when it is not JSON, 422 naming the field when a
    field is missing or wrong, 413 when too large."""
    if request.body_exists and request.content_type not in ("application/json", ""):
        raise UnsupportedMediaType("send the body as application/json")
    raw = await read_whole(request, MAX_JSON_BODY, "JSON bodies")
    if not raw.strip():
        if allow_empty:
            raw = b"{}"
        else:
            raise BadRequest("a JSON body is required", code="invalid_json")
    return validation.decode_json(raw, type_)


def read_query(request: web.Request, type_: type[T], *, lists: tuple[str, ...] = ()) -> T:
    """Query parameters into `type_` ("10" -> 10, "true" -> True). Parameters named in `lists`
    may repeat or be comma-separated."""
    data: dict[str, Any] = {}
    for key, value in request.query.items():
        # named as sent (a list parameter's values are named by the parameter, not an index)
        validation.no_control_characters(key, "query")
        validation.no_control_characters(value, key)
    for key in request.query:
        if key in lists:
            values = [v for raw in request.query.getall(key) for v in raw.split(",") if v]
            data[key] = values
        else:
            data[key] = request.query[key]
    # (every key and value was checked above, and a query holds nothing but strings)
    return validation.convert(data, type_, strict=False, check=False)


def path_id(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A UUID from the path. A malformed id names nothing that exists, so it is a 404."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"{what} not found") from None
