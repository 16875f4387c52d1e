"""/api/calendar: events and their occurrences, the private iCalendar feed, .ics import."""

from __future__ import annotations

import binascii

from aiohttp import web

from ..calendar.events import (
    CALENDAR,
    CalendarQuery,
    CalendarRange,
    EventCreate,
    EventUpdate,
    EventView,
    OccurrenceQuery,
)
from ..calendar.feed import CALENDAR_FEED, FeedStatus, FeedToken, ImportResult
from ..errors import BadRequest, PayloadTooLarge
from .contract import FILE_FORM, Raw, access, operation, signed_in
from .middleware import principal
from .render import Form, path_id, read_whole

routes = web.RouteTableDef()

MAX_ICS_BYTES = 2 * 1024 * 1024
_UNDECODABLE = (ValueError, RuntimeError, LookupError, binascii.Error)

# Events are personal: the reference event is the owner's (linked to the private pod), and
# nobody else sees it.
_OWNERS = signed_in(404, owner=200)


@routes.get("/api/calendar/events")
@operation(tag="calendar", access=signed_in(200))
async def calendar_range(request: web.Request, query: CalendarQuery) -> CalendarRange:
    """The caller's events and their occurrences between two instants."""
    return await request.app[CALENDAR].range(principal(request), query)


@routes.post("/api/calendar/events")
@operation(
    tag="calendar",
    status=201,
    errors=(403, 404),
    # linking an event to a pod the caller does not belong to is a bad relatedPodId
    access=signed_in(201, outsider=422, banned=422, admin=422),
)
async def create_event(request: web.Request, body: EventCreate) -> EventView:
    """Add an event (personal, or in a pod the caller belongs to); may recur."""
    return await request.app[CALENDAR].create(principal(request), body)


@routes.get("/api/calendar/events/{eventId}")
@operation(tag="calendar", access=_OWNERS)
async def get_event(request: web.Request) -> EventView:
    """One event."""
    event_id = path_id(request, "eventId", "event")
    return await request.app[CALENDAR].get(principal(request), event_id)


@routes.put("/api/calendar/events/{eventId}")
@operation(tag="calendar", errors=(403, 409), access=_OWNERS)
async def update_event(
    request: web.Request, query: OccurrenceQuery, body: EventUpdate
) -> EventView:
    """Change an event; ?recurrenceId=...&scope=this|following|all picks what it applies to."""
    event_id = path_id(request, "eventId", "event")
    return await request.app[CALENDAR].update(principal(request), event_id, body, query)


@routes.delete("/api/calendar/events/{eventId}")
@operation(tag="calendar", errors=(403, 409), access=signed_in(404, owner=204))
async def delete_event(request: web.Request, query: OccurrenceQuery) -> None:
    """Delete an event, or some of its occurrences (?recurrenceId&scope)."""
    event_id = path_id(request, "eventId", "event")
    await request.app[CALENDAR].delete(principal(request), event_id, query)


@routes.get("/api/calendar/feed")
@operation(tag="calendar", access=signed_in(200))
async def feed_status(request: web.Request) -> FeedStatus:
    """Whether the caller has a calendar feed URL, and when it was made."""
    return await request.app[CALENDAR_FEED].status(principal(request))


@routes.post("/api/calendar/feed")
@operation(tag="calendar", status=201, access=signed_in(201))
async def create_feed(request: web.Request) -> FeedToken:
    """A new secret feed URL; any earlier one stops working."""
    return await request.app[CALENDAR_FEED].create_token(principal(request))


@routes.delete("/api/calendar/feed")
@operation(tag="calendar", access=signed_in(204))
async def revoke_feed(request: web.Request) -> None:
    """Stop the caller's feed URL from working."""
    await request.app[CALENDAR_FEED].revoke(principal(request))


@routes.get("/api/calendar/feed/{token}.ics")
@operation(
    tag="calendar",
    public=True,
    errors=(404,),
    raw={200: Raw("text/calendar", "the caller's events as an iCalendar feed")},
    access=access(200),
)
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
@operation(
    tag="calendar",
    errors=(400, 413, 415, 422),
    raw_body={"text/calendar": {"type": "string"}, "multipart/form-data": FILE_FORM},
    access=signed_in(200),
)
async def import_ics(request: web.Request) -> ImportResult:
    """Import a .ics file: sent as the body (text/calendar) or as the `file` field of a form."""
    data = await _ics_body(request)
    return await request.app[CALENDAR_FEED].import_ics(principal(request), data)


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
