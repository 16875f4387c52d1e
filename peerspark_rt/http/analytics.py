"""/api/analytics: a student's dashboards; /api/admin/metrics: the platform's figures."""

from __future__ import annotations

from aiohttp import web

from ..analytics.admin import PLATFORM, MetricsQuery, PlatformMetrics
from ..analytics.dashboards import DASHBOARDS, DashboardAnalytics, PatternsQuery, StudyPatterns
from ..errors import Forbidden
from .contract import operation, signed_in
from .middleware import principal

routes = web.RouteTableDef()


@routes.get("/api/analytics/dashboard")
@operation(tag="analytics", access=signed_in(200))
async def dashboard(request: web.Request) -> DashboardAnalytics:
    """Your study time, sessions, social figures and achievements, on your own days."""
    return await request.app[DASHBOARDS].dashboard(principal(request).user_id)


@routes.get("/api/analytics/study-patterns")
@operation(tag="analytics", access=signed_in(200))
async def study_patterns(request: web.Request, query: PatternsQuery) -> StudyPatterns:
    """Hours by day, subjects, focus scores and productive hours over the last `days`."""
    return await request.app[DASHBOARDS].study_patterns(principal(request).user_id, query)


@routes.get("/api/admin/metrics")
@operation(tag="analytics", errors=(403,), access=signed_in(403, admin=200))
async def admin_metrics(request: web.Request, query: MetricsQuery) -> PlatformMetrics:
    """The platform's figures by UTC day (platform admins)."""
    if principal(request).role != "admin":
        raise Forbidden("platform admins only", code="not_admin")
    return await request.app[PLATFORM].metrics(query)
