"""/api/reports: report content; moderators list reports and restore or remove content."""

from __future__ import annotations

from aiohttp import web

from ..services.reports import ReportQuery, ReportRequest, ResolveRequest
from .keys import REPORTS
from .middleware import principal
from .render import json_response, path_id, read_body, read_query

routes = web.RouteTableDef()


@routes.post("/api/reports")
async def report(request: web.Request) -> web.Response:
    body = await read_body(request, ReportRequest)
    result = await request.app[REPORTS].report(principal(request), body)
    return json_response(result, status=200 if result.already_reported else 201)


@routes.get("/api/reports")
async def list_reports(request: web.Request) -> web.Response:
    query = read_query(request, ReportQuery)
    return json_response(await request.app[REPORTS].list(principal(request), query))


@routes.post("/api/reports/{reportId}/resolve")
async def resolve(request: web.Request) -> web.Response:
    report_id = path_id(request, "reportId", "report")
    body = await read_body(request, ResolveRequest)
    return json_response(await request.app[REPORTS].resolve(principal(request), report_id, body))
