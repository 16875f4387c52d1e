"""The platform admin API: find users, change their platform role, suspend and restore them,
grant and revoke premium; every action is written to the audit log in the same transaction.

Premium is granted here by an admin; payments are out of scope. `Premium` is the seam: a
payment integration calls `Premium.grant(user_id, expires_at, actor=None, source="payment")`
on a paid invoice and `Premium.revoke` on a refund, and the scheduled `premium_expiry` job
ends whatever runs out, whoever granted it.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra import cursor as cursors
from ..infra.dbtypes import Executor
from ..infra.jobs import Job, JobQueue
from ..infra.pool import Database
from . import db as users_db
from . import links
from .auth import AuthService, Principal
from .db import admin as admin_db

log = logging.getLogger(__name__)

ROLES = ("user", "moderator", "admin")
STATUSES = ("active", "suspended", "deactivated")
CURSOR_LISTING = "admin-users"
EXPIRY_BATCH = 500

PlatformRole = Literal["user", "moderator", "admin"]


class AdminUser(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    email: str
    username: str
    first_name: str
    last_name: str
    role: str
    account_status: str
    is_verified: bool
    is_premium: bool
    premium_expires_at: dt.datetime | None
    has_password: bool
    providers: list[str]
    created_at: dt.datetime
    last_active_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AdminUser:
        return cls(**{f: row[f] for f in cls.__struct_fields__})


class AdminUserPage(msgspec.Struct, rename="camel"):
    users: list[AdminUser]
    next_cursor: str | None


class UserSearch(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    q: str | None = None
    role: str | None = None
    status: str | None = None
    cursor: str | None = None
    limit: int = 50


class RoleChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    role: PlatformRole


class Suspension(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    reason: str


class PremiumGrant(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Premium until `expiresAt` (null: until revoked)."""

    expires_at: dt.datetime | None = None
    note: str | None = None


class AuditEntry(msgspec.Struct, rename="camel"):
    id: int
    actor_id: uuid.UUID | None
    actor: str | None
    action: str
    target_user_id: uuid.UUID | None
    target: str | None
    details: dict[str, Any]
    created_at: dt.datetime


class AuditPage(msgspec.Struct, rename="camel"):
    entries: list[AuditEntry]
    next_before: int | None


class AuditQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    target_user_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    before: int | None = None
    limit: int = 50


def require_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden("this needs the platform admin role", code="not_admin")


def _reason(text: str | None, field: str, *, required: bool) -> str | None:
    value = (text or "").strip()
    if not value:
        if required:
            raise Invalid(field, "must not be empty")
        return None
    if len(value) > 1000 or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise Invalid(field, "must be at most 1000 characters of text")
    return value


class Premium:
    """Premium status: granted, revoked, and ended when it runs out (see the module doc)."""

    def __init__(self, db: Database, jobs: JobQueue | None, base_url: str) -> None:
        self.db = db
        self.jobs = jobs
        self.base_url = base_url

    async def grant(
        self,
        conn: Executor,
        user_id: uuid.UUID,
        expires_at: dt.datetime | None,
        *,
        actor: Principal | None,
        source: str,
        note: str | None = None,
    ) -> None:
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise Invalid("expiresAt", "must include a UTC offset")
            if expires_at <= dt.datetime.now(dt.UTC):
                raise Invalid("expiresAt", "must be in the future")
        await admin_db.set_premium(conn, user_id, True, expires_at)
        details: dict[str, Any] = {"source": source, "expiresAt": _iso(expires_at)}
        if note:
            details["note"] = note
        await _audit(conn, actor, "premium_granted", user_id, details)

    async def revoke(
        self, conn: Executor, user_id: uuid.UUID, *, actor: Principal | None, source: str
    ) -> None:
        await admin_db.set_premium(conn, user_id, False, None)
        await _audit(conn, actor, "premium_revoked", user_id, {"source": source})

    async def expire_due(self, job: Job) -> None:
        """The `premium_expiry` job: end every premium whose time ran out, tell each user by
        email, and log it (actor: the platform)."""
        while True:
            async with self.db.transaction() as conn:
                rows = await admin_db.expire_premium(conn, EXPIRY_BATCH)
                for row in rows:
                    await _audit(
                        conn,
                        None,
                        "premium_expired",
                        row["id"],
                        {"expiredAt": _iso(row["premium_expires_at"])},
                    )
                    if self.jobs is not None:
                        await links.enqueue_email(
                            self.jobs,
                            conn,
                            to=row["email"],
                            first_name=row["first_name"],
                            subject="Your PeerSpark premium has ended",
                            message="Your premium membership ran out today. Everything you made "
                            "stays; the premium benefits stop.",
                            link=f"{self.base_url}/settings/account",
                            link_label="Your account",
                            user_id=row["id"],
                        )
            if len(rows) < EXPIRY_BATCH:
                return


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _audit(
    conn: Executor,
    actor: Principal | None,
    action: str,
    target_id: uuid.UUID | None,
    details: dict[str, Any],
    target_label: str | None = None,
) -> None:
    if target_label is None and target_id is not None:
        target_label = await conn.fetchval("SELECT username FROM users WHERE id = $1", target_id)
    await admin_db.audit(
        conn,
        actor_id=actor.user_id if actor else None,
        actor_label=actor.username if actor else "platform",
        action=action,
        target_id=target_id,
        target_label=target_label,
        details=details,
    )


class AdminService:
    def __init__(self, auth: AuthService, premium: Premium) -> None:
        self.auth = auth
        self.db = auth.db
        self.premium = premium

    async def users(self, principal: Principal, query: UserSearch) -> AdminUserPage:
        require_admin(principal)
        if not 1 <= query.limit <= 200:
            raise Invalid("limit", "must be between 1 and 200")
        q = (query.q or "").strip() or None
        if q is not None and len(q) > 255:
            raise Invalid("q", "must be at most 255 characters")
        if query.role is not None and query.role not in ROLES:
            raise Invalid("role", f"must be one of {', '.join(ROLES)}")
        if query.status is not None and query.status not in STATUSES:
            raise Invalid("status", f"must be one of {', '.join(STATUSES)}")
        after = None
        if query.cursor:
            created_at, ident = cursors.decode(
                query.cursor, CURSOR_LISTING, (dt.datetime, uuid.UUID)
            )
            after = (created_at, ident)
        rows = await admin_db.search_users(
            self.db.pool,
            q=q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if q else None,
            role=query.role,
            status=query.status,
            after=after,
            limit=query.limit + 1,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = None
        if more:
            cursor = cursors.encode(CURSOR_LISTING, (rows[-1]["created_at"], rows[-1]["id"]))
        return AdminUserPage([AdminUser.from_row(r) for r in rows], cursor)

    async def user(self, principal: Principal, user_id: uuid.UUID) -> AdminUser:
        require_admin(principal)
        row = await admin_db.get_user(self.db.pool, user_id)
        if row is None:
            raise NotFound("user not found")
        return AdminUser.from_row(row)

    async def _target(self, conn: Executor, user_id: uuid.UUID) -> asyncpg.Record:
        row = await admin_db.get_user(conn, user_id, lock=True)
        if row is None:
            raise NotFound("user not found")
        return row

    async def set_role(
        self, principal: Principal, user_id: uuid.UUID, body: RoleChange
    ) -> AdminUser:
        require_admin(principal)
        async with self.db.transaction() as conn:
            row = await self._target(conn, user_id)
            if row["role"] == body.role:
                return AdminUser.from_row(row)
            if user_id == principal.user_id:
                raise Conflict(
                    "you cannot change your own role (ask another admin)", code="own_role"
                )
            await admin_db.set_role(conn, user_id, body.role)
            await _audit(
                conn, principal, "role_changed", user_id, {"from": row["role"], "to": body.role}
            )
            changed = await admin_db.get_user(conn, user_id)
        if changed is None:
            raise NotFound("user not found")
        return AdminUser.from_row(changed)

    async def suspend(
        self, principal: Principal, user_id: uuid.UUID, body: Suspension
    ) -> AdminUser:
        """Suspend: the account cannot sign in, and every login session and socket it has ends
        at once."""
        require_admin(principal)
        reason = _reason(body.reason, "reason", required=True)
        async with self.db.transaction() as conn:
            row = await self._target(conn, user_id)
            if user_id == principal.user_id:
                raise Conflict("you cannot suspend yourself", code="own_account")
            if row["account_status"] != "active":
                raise Conflict(f"the account is {row['account_status']}", code="not_active")
            await admin_db.set_status(conn, user_id, "suspended")
            ended = await users_db.delete_sessions(conn, user_id)
            await _audit(
                conn, principal, "suspended", user_id, {"reason": reason, "sessions": len(ended)}
            )
            changed = await admin_db.get_user(conn, user_id)
        await self.auth.revoke_all(user_id, ended)
        if changed is None:
            raise NotFound("user not found")
        return AdminUser.from_row(changed)

    async def restore(self, principal: Principal, user_id: uuid.UUID) -> AdminUser:
        require_admin(principal)
        async with self.db.transaction() as conn:
            row = await self._target(conn, user_id)
            if row["account_status"] != "suspended":
                raise Conflict("the account is not suspended", code="not_suspended")
            await admin_db.set_status(conn, user_id, "active")
            await _audit(conn, principal, "restored", user_id, {})
            changed = await admin_db.get_user(conn, user_id)
        if changed is None:
            raise NotFound("user not found")
        return AdminUser.from_row(changed)

    async def grant_premium(
        self, principal: Principal, user_id: uuid.UUID, body: PremiumGrant
    ) -> AdminUser:
        require_admin(principal)
        note = _reason(body.note, "note", required=False)
        async with self.db.transaction() as conn:
            await self._target(conn, user_id)
            await self.premium.grant(
                conn, user_id, body.expires_at, actor=principal, source="admin", note=note
            )
            changed = await admin_db.get_user(conn, user_id)
        if changed is None:
            raise NotFound("user not found")
        return AdminUser.from_row(changed)

    async def revoke_premium(self, principal: Principal, user_id: uuid.UUID) -> AdminUser:
        require_admin(principal)
        async with self.db.transaction() as conn:
            row = await self._target(conn, user_id)
            if not row["is_premium"]:
                raise Conflict("the user has no premium", code="not_premium")
            await self.premium.revoke(conn, user_id, actor=principal, source="admin")
            changed = await admin_db.get_user(conn, user_id)
        if changed is None:
            raise NotFound("user not found")
        return AdminUser.from_row(changed)

    async def audit_log(self, principal: Principal, query: AuditQuery) -> AuditPage:
        require_admin(principal)
        if not 1 <= query.limit <= 200:
            raise Invalid("limit", "must be between 1 and 200")
        rows = await admin_db.audit_page(
            self.db.pool,
            target_id=query.target_user_id,
            actor_id=query.actor_id,
            before=query.before,
            limit=query.limit + 1,
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        entries = [
            AuditEntry(
                id=r["id"],
                actor_id=r["actor_id"],
                actor=r["actor_label"],
                action=r["action"],
                target_user_id=r["target_user_id"],
                target=r["target_label"],
                details=r["details"] or {},
                created_at=r["created_at"],
            )
            for r in rows
        ]
        return AuditPage(entries, rows[-1]["id"] if more else None)


async def grant_admin_by_email(db: Database, email: str) -> AdminUser:
    """`python -m peerspark_rt admin grant EMAIL`: make the account a platform admin (how the
    first admin comes to be); logged with the command line as its actor."""
    async with db.transaction() as conn:
        row = await admin_db.user_by_email(conn, email.strip())
        if row is None:
            raise NotFound(f"no account uses {email}")
        if row["role"] != "admin":
            await admin_db.set_role(conn, row["id"], "admin")
            await admin_db.audit(
                conn,
                actor_id=None,
                actor_label="command line",
                action="role_changed",
                target_id=row["id"],
                target_label=row["username"],
                details={"from": row["role"], "to": "admin"},
            )
        changed = await admin_db.get_user(conn, row["id"])
    if changed is None:
        raise NotFound(f"no account uses {email}")
    return AdminUser.from_row(changed)


# the application's keys for what this module provides (typed app state)
ADMIN = web.AppKey("admin", AdminService)
PREMIUM = web.AppKey("premium", Premium)
