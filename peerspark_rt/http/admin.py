"""/api/admin: the platform admin API (users, roles, suspension, premium, the audit log).
Every route is for platform admins only (users.role 'admin'): others get 403."""

from __future__ import annotations

from aiohttp import web

from ..accounts.admin import (
    ADMIN,
    AdminUser,
    AdminUserPage,
    AuditPage,
    AuditQuery,
    PremiumGrant,
    RoleChange,
    Suspension,
    UserSearch,
)
from .contract import operation, signed_in
from .middleware import principal
from .render import path_id

routes = web.RouteTableDef()

ADMIN_ONLY = signed_in(403, admin=200)


@routes.get("/api/admin/users")
@operation(tag="admin", errors=(403,), access=ADMIN_ONLY)
async def list_users(request: web.Request, query: UserSearch) -> AdminUserPage:
    """Users, newest first; `q` finds part of an email or username."""
    return await request.app[ADMIN].users(principal(request), query)


@routes.get("/api/admin/users/{userId}")
@operation(tag="admin", errors=(403,), access=ADMIN_ONLY)
async def get_user(request: web.Request) -> AdminUser:
    """One user as admins see them."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].user(principal(request), user_id)


@routes.put("/api/admin/users/{userId}/role")
@operation(tag="admin", errors=(403, 409), access=ADMIN_ONLY)
async def set_role(request: web.Request, body: RoleChange) -> AdminUser:
    """Change a user's platform role (user, moderator, admin); not one's own."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].set_role(principal(request), user_id, body)


@routes.post("/api/admin/users/{userId}/suspend")
@operation(tag="admin", errors=(403, 409), access=ADMIN_ONLY)
async def suspend(request: web.Request, body: Suspension) -> AdminUser:
    """Suspend an account: its login sessions and sockets end at once."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].suspend(principal(request), user_id, body)


@routes.post("/api/admin/users/{userId}/restore")
@operation(
    tag="admin",
    errors=(403, 409),
    # the reference member is not suspended: restoring is refused (409) once authorized
    access=signed_in(403, admin=409),
)
async def restore(request: web.Request) -> AdminUser:
    """Lift a suspension."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].restore(principal(request), user_id)


@routes.put("/api/admin/users/{userId}/premium")
@operation(tag="admin", errors=(403,), access=ADMIN_ONLY)
async def grant_premium(request: web.Request, body: PremiumGrant) -> AdminUser:
    """Grant premium until `expiresAt` (null: until revoked)."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].grant_premium(principal(request), user_id, body)


@routes.delete("/api/admin/users/{userId}/premium")
@operation(
    tag="admin",
    errors=(403, 409),
    # the reference member has no premium: revoking is refused (409) once authorized
    access=signed_in(403, admin=409),
)
async def revoke_premium(request: web.Request) -> AdminUser:
    """End a user's premium now."""
    user_id = path_id(request, "userId", "user")
    return await request.app[ADMIN].revoke_premium(principal(request), user_id)


@routes.get("/api/admin/audit-log")
@operation(tag="admin", errors=(403,), access=ADMIN_ONLY)
async def audit_log(request: web.Request, query: AuditQuery) -> AuditPage:
    """What admins did, newest first (page with `before`)."""
    return await request.app[ADMIN].audit_log(principal(request), query)
