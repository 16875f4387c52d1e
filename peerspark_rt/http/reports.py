"""/api/reports: report content; moderators list reports and restore or remove content."""

from __future__ import annotations

from aiohttp import web

from ..social.reports import (
    REPORTS,
    ReportPage,
    ReportQuery,
    ReportRequest,
    ReportResult,
    Resolution,
    ResolveRequest,
)
from .contract import Reply, operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()


@routes.post("/api/reports")
@operation(
    tag="reports",
    status=(201, 200),
    errors=(403, 404, 409, 429),
    # the reference target is the member's comment: reporting one's own content is refused
    access=signed_in(201, outsider=404, member=409, banned=404, admin=404),
)
async def report(request: web.Request, body: ReportRequest) -> Reply[ReportResult]:
    """Report a post, comment or resource the caller can see; 200 when already reported."""
    result = await request.app[REPORTS].report(principal(request), body)
    return Reply(result, status=200 if result.already_reported else 201)


@routes.get("/api/reports")
@operation(tag="reports", errors=(403,), access=signed_in(200))
async def list_reports(request: web.Request, query: ReportQuery) -> ReportPage:
    """Reports the caller reviews (pod moderators: their pods; platform moderators: all)."""
    return await request.app[REPORTS].list(principal(request), query)


@routes.post("/api/reports/{reportId}/resolve")
@operation(
    tag="reports",
    errors=(403, 409),
    access=signed_in(404, moderator=200, owner=200, admin=200),
)
async def resolve(request: web.Request, body: ResolveRequest) -> Resolution:
    """Restore or remove reported content, resolving its reports (moderators)."""
    report_id = path_id(request, "reportId", "report")
    return await request.app[REPORTS].resolve(principal(request), report_id, body)
