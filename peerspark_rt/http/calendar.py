"""/api/calendar: events and their occurrences, the private iCalendar feed, .ics import."""

from __future__ import annotations

import binascii

from aiohttp import web

from ..errors import BadRequest, PayloadTooLarge
from ..services.calendar import CalendarQuery, EventCreate, EventUpdate, OccurrenceQuery
from .keys import CALENDAR, CALENDAR_FEED
from .middleware import principal, public
from .render import (
    Form,
    json_response,
    no_content,
    path_id,
    read_body,
    read_query,
    read_whole,
)

routes = web.RouteTableDef()

MAX_ICS_BYTES = 2 * 1024 * 1024
_UNDECODABLE = (ValueError, RuntimeError, LookupError, binascii.Error)


@routes.get("/api/calendar/events")
async def calendar_range(request: web.Request) -> web.Response:
    query = read_query(request, CalendarQuery, lists=("eventTypes",))
    return json_response(await request.app[CALENDAR].range(principal(request), query))


@routes.post("/api/calendar/events")
async def create_event(request: web.Request) -> web.Response:
    body = await read_body(request, EventCreate)
    return json_response(await request.app[CALENDAR].create(principal(request), body), status=201)


@routes.get("/api/calendar/events/{eventId}")
async def get_event(request: web.Request) -> web.Response:
    event_id = path_id(request, "eventId", "event")
    return json_response(await request.app[CALENDAR].get(principal(request), event_id))


@routes.put("/api/calendar/events/{eventId}")
async def update_event(request: web.Request) -> web.Response:
    """?recurrenceId=...&scope=this|following|all picks what a change applies to."""
    event_id = path_id(request, "eventId", "event")
    where = read_query(request, OccurrenceQuery)
    body = await read_body(request, EventUpdate)
    result = await request.app[CALENDAR].update(principal(request), event_id, body, where)
    return json_response(result)


@routes.delete("/api/calendar/events/{eventId}")
async def delete_event(request: web.Request) -> web.Response:
    event_id = path_id(request, "eventId", "event")
    where = read_query(request, OccurrenceQuery)
    await request.app[CALENDAR].delete(principal(request), event_id, where)
    return no_content()


@routes.get("/api/calendar/feed")
async def feed_status(request: web.Request) -> web.Response:
    return json_response(await request.app[CALENDAR_FEED].status(principal(request)))


@routes.post("/api/calendar/feed")
async def create_feed(request: web.Request) -> web.Response:
    """A new secret feed URL; any earlier one stops working."""
    token = await request.app[CALENDAR_FEED].create_token(principal(request))
    return json_response(token, status=201)


@routes.delete("/api/calendar/feed")
async def revoke_feed(request: web.Request) -> web.Response:
    await request.app[CALENDAR_FEED].revoke(principal(request))
    return no_content()


@routes.get("/api/calendar/feed/{token}.ics")
@public
async def feed(request: web.Request) -> web.Response:
    """The feed itself. Public: calendar clients send no headers, the token is the secret."""
    body = await request.app[CALENDAR_FEED].render(request.match_info["token"])
    return web.Response(
        body=body,
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": 'inline; filename="peerspark.ics"',
            "Cache-Control": "private, max-age=300",
        },
    )


@routes.post("/api/calendar/import")
async def import_ics(request: web.Request) -> web.Response:
    """Import a .ics file: sent as the body (text/calendar) or as the `file` field of a form."""
    data = await _ics_body(request)
    result = await request.app[CALENDAR_FEED].import_ics(principal(request), data)
    return json_response(result, status=200)


async def _ics_body(request: web.Request) -> bytes:
    if request.content_type.startswith("multipart/"):
        if request.content_length is not None and request.content_length > MAX_ICS_BYTES:
            raise PayloadTooLarge(f"calendar files are limited to {MAX_ICS_BYTES} bytes")
        form = Form.open(request, "file")
        while (part := await form.next_part()) is not None:
            if part.name != "file":
                await form.skip(part)
                continue
            raw = bytearray()
            while piece := await form.piece(part):
                raw += piece
                if len(raw) > MAX_ICS_BYTES:
                    raise PayloadTooLarge(f"calendar files are limited to {MAX_ICS_BYTES} bytes")
            try:
                return bytes(part.decode(bytes(raw)))
            except _UNDECODABLE:
                raise BadRequest(
                    "the file's Content-Transfer-Encoding could not be decoded",
                    code="invalid_multipart",
                ) from None
        raise BadRequest("send the calendar as a form field named file", code="missing_file")
    data = await read_whole(request, MAX_ICS_BYTES, "calendar files")
    if not data.strip():
        raise BadRequest("send an iCalendar (.ics) file as the body", code="invalid_ics")
    return data
