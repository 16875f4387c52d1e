"""Study pods: the authorization backbone. Who belongs to a pod, with which role, decides what
they may see and do in its feed, sessions and resources.

One piece because membership changes (join, leave, remove, ban, role, invite) share the pod
row lock, the rank rules and the live evictions; apart they would each re-check them.

Rules:
* owner > admin > moderator > member. Only the owner deletes the pod or transfers ownership.
  Owner and admins edit the pod and invite. Moderators and up remove or ban members ranked
  below them.
* Private pods are invisible (404) to everyone but active members and holders of a live
  invitation; joining one needs an invitation.
* Banned users cannot rejoin. `max_members` is enforced and `current_member_count` kept true
  by locking the pod row for every membership change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts import links
from ..accounts.auth import Principal
from ..accounts.verification import EmailGate
from ..analytics import db as analytics_db
from ..analytics.events import Analytics, Kind
from ..errors import AppError, Conflict, Forbidden, Invalid, NotFound
from ..infra import validation
from ..infra.aftercommit import Deferred, unit
from ..infra.dbtypes import Conn, Executor
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..notifications.service import NewNotification, NotificationService
from . import db as pods_db

log = logging.getLogger(__name__)

ROLE_RANK = {"member": 1, "moderator": 2, "admin": 3, "owner": 4}
CATEGORIES = ("academic", "professional", "hobby")
DIFFICULTIES = ("beginner", "intermediate", "advanced")
INVITATION_TTL = dt.timedelta(days=7)
MAX_MEMBERS_LIMIT = 10_000

Role = Literal["owner", "admin", "moderator", "member"]


def ranks_at_least(role: str | None, min_role: Role) -> bool:
    """Whether an active member's `role` (None: not a member) is `min_role` or higher."""
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[min_role]


def roles_at_least(min_role: Role) -> tuple[str, ...]:
    """Every role ranked `min_role` or higher (for SQL that filters memberships by role)."""
    return tuple(role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[min_role])


def is_moderator(principal: Principal, pod_role: str | None) -> bool:
    """Who moderates content in a pod: platform moderators, and the pod's moderators (or
    higher). `pod_role` is the principal's role in the pod, None outside pods or when they are
    not an active member."""
    return principal.is_platform_moderator or ranks_at_least(pod_role, "moderator")


class PodCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str
    subject: str
    description: str | None = None
    category: str | None = None
    difficulty_level: str | None = None
    is_public: bool = True
    max_members: int = 50
    tags: list[str] = []
    rules: str | None = None
    cover_image_url: str | None = None
    meeting_schedule: dict[str, Any] | list[Any] | None = None
    timezone: str = "UTC"
    language: str = "en"


class PodUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    subject: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    category: str | msgspec.UnsetType | None = msgspec.UNSET
    difficulty_level: str | msgspec.UnsetType | None = msgspec.UNSET
    is_public: bool | msgspec.UnsetType = msgspec.UNSET
    max_members: int | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    rules: str | msgspec.UnsetType | None = msgspec.UNSET
    cover_image_url: str | msgspec.UnsetType | None = msgspec.UNSET
    meeting_schedule: dict[str, Any] | list[Any] | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType = msgspec.UNSET
    settings: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class PodQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    search: str | None = None
    subject: str | None = None
    category: str | None = None
    difficulty: str | None = None
    is_public: bool | None = None
    member: bool = False
    limit: int = 20
    offset: int = 0


class JoinRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    invitation_code: str | None = None


class InviteRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: str | None = None
    user_id: str | None = None
    message: str | None = None


class MemberUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    role: Role


class Pod(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    name: str
    description: str | None
    subject: str
    category: str | None
    difficulty_level: str | None
    cover_image_url: str | None
    is_public: bool
    max_members: int
    current_member_count: int
    creator_id: uuid.UUID | None
    tags: list[str]
    rules: str | None
    meeting_schedule: Any
    timezone: str | None
    language: str | None
    status: str
    settings: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    my_role: str | None = None
    my_status: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Pod:
        fields = {f: row[f] for f in cls.__struct_fields__ if f in row.keys()}  # noqa: SIM118
        if fields.get("my_status") != "active":
            fields["my_role"] = None
        return cls(**fields)


class PodPage(msgspec.Struct, rename="camel"):
    pods: list[Pod]
    total: int
    limit: int
    offset: int


class PodMember(msgspec.Struct, rename="camel"):
    user_id: uuid.UUID
    username: str
    first_name: str
    last_name: str
    avatar_url: str | None
    role: str
    status: str
    joined_at: dt.datetime
    last_active_at: dt.datetime | None
    contribution_score: int


class MemberPage(msgspec.Struct, rename="camel"):
    members: list[PodMember]
    total: int
    limit: int
    offset: int


class Membership(msgspec.Struct, rename="camel"):
    pod_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    status: str
    joined_at: dt.datetime
    member_count: int


class Invitation(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    pod_id: uuid.UUID
    inviter_id: uuid.UUID
    invitee_email: str | None
    invitee_id: uuid.UUID | None
    invitation_code: str
    message: str | None
    status: str
    expires_at: dt.datetime | None
    created_at: dt.datetime


TOP_CONTRIBUTORS = 5


class PodAnalyticsQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    days: int = 7  # the window in which a member counts as active


class Contributor(msgspec.Struct, rename="camel"):
    user_id: uuid.UUID
    username: str
    contribution_score: int


class PodAnalytics(msgspec.Struct, rename="camel"):
    member_count: int
    active_members: int
    total_sessions: int
    total_resources: int
    engagement_rate: float
    growth_rate: float
    new_members_last_30_days: int
    posts_last_30_days: int
    left_last_30_days: int
    window_days: int
    top_contributors: list[Contributor]


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= 100:
        raise Invalid("limit", "must be between 1 and 100")
    if offset < 0:
        raise Invalid("offset", "must not be negative")
    return limit, offset


def _pod_values(given: dict[str, Any]) -> dict[str, Any]:
    """Validate pod fields (snake_case names) and return the column values."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        camel = validation.camel(name)
        match name:
            case "name":
                out[name] = validation.text(value, camel, max_len=255)
            case "subject":
                out[name] = validation.text(value, camel, max_len=100)
            case "description":
                out[name] = validation.optional_text(value, camel, 5000)
            case "rules":
                out[name] = validation.optional_text(value, camel, 10000)
            case "category":
                out[name] = None if value is None else validation.one_of(value, camel, CATEGORIES)
            case "difficulty_level":
                out[name] = None if value is None else validation.one_of(value, camel, DIFFICULTIES)
            case "max_members":
                if not 2 <= value <= MAX_MEMBERS_LIMIT:
                    raise Invalid(camel, f"must be between 2 and {MAX_MEMBERS_LIMIT}")
                out[name] = value
            case "tags":
                out[name] = validation.tags(value, camel)
            case "cover_image_url":
                out[name] = validation.optional_url(value, camel)
            case "timezone":
                out[name] = validation.timezone(value, camel)
            case "language":
                if not 2 <= len(value) <= 10:
                    raise Invalid(camel, "must be a language tag such as 'en' or 'pt-BR'")
                out[name] = value
            case "meeting_schedule" | "settings":
                out[name] = validation.bounded_json(value, camel, 16384)
            case _:
                out[name] = value
    return out


class PodService:
    def __init__(
        self,
        db: Database,
        live: LiveEvents,
        notifications: NotificationService,
        analytics: Analytics,
        gate: EmailGate | None = None,
    ) -> None:
        self.db = db
        self.live = live
        self.notifications = notifications
        self.gate = gate or EmailGate()
        self.events = analytics  # (the event log; `analytics()` is the pod's figures)
        # (pod_id, user_id) -> the live rooms besides the pod's own that a member loses with
        # the pod (the study sessions register theirs): pods know nothing of sessions
        self.rooms_lost_with: list[Callable[[uuid.UUID, uuid.UUID], Awaitable[list[str]]]] = []

    # --- access checks used by every area that belongs to a pod ----------------------------

    # Each check takes the caller's connection (`db`) when it runs inside a transaction: taking
    # a second connection from the pool while holding one deadlocks once every connection is
    # held by a request waiting for another.

    async def visible_pod(
        self, principal: Principal, pod_id: uuid.UUID, db: Executor | None = None
    ) -> asyncpg.Record:
        """The pod row if the caller may see it, else NotFound (private pods stay hidden)."""
        row = await pods_db.get_pod_for(db or self.db.pool, pod_id, principal.user_id)
        if row is None or row["status"] == "suspended":
            raise NotFound("pod not found")
        if not row["is_public"] and row["my_status"] != "active" and not row["invited"]:
            raise NotFound("pod not found")
        return row

    async def member_role(
        self, pod_id: uuid.UUID, user_id: uuid.UUID, db: Executor | None = None
    ) -> str | None:
        """The user's role if they are an active member, else None."""
        row = await pods_db.get_membership(db or self.db.pool, pod_id, user_id)
        if row is None or row["status"] != "active":
            return None
        role: str = row["role"]
        return role

    async def require_member(
        self,
        principal: Principal,
        pod_id: uuid.UUID,
        min_role: Role = "member",
        db: Executor | None = None,
    ) -> str:
        """Raise unless the caller is an active member with at least `min_role`."""
        row = await self.visible_pod(principal, pod_id, db)
        role = row["my_role"] if row["my_status"] == "active" else None
        if role is None:
            raise Forbidden("you are not a member of this pod", code="not_a_member")
        if not ranks_at_least(role, min_role):
            raise Forbidden(f"this needs the {min_role} role or higher", code="insufficient_role")
        return str(role)

    # --- pods ------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: PodCreate) -> Pod:
        if body.is_public:
            self.gate.check(principal, "public_pod")
        values = _pod_values(
            {f: getattr(body, f) for f in body.__struct_fields__ if f != "meeting_schedule"}
        )
        values["meeting_schedule"] = body.meeting_schedule
        values.update(creator_id=principal.user_id, current_member_count=1)
        async with unit(self.db) as (conn, after):
            pod_id = await pods_db.insert_pod(conn, values)
            row = await pods_db.upsert_active_membership(conn, pod_id, principal.user_id, "owner")
            await self._membership_event(
                conn, after, Kind.POD_JOINED, pod_id, principal.user_id, row
            )
        return await self.get(principal, pod_id)

    async def _membership_event(
        self,
        conn: Conn,
        after: Deferred,
        kind: Kind,
        pod_id: uuid.UUID,
        user_id: uuid.UUID,
        membership: asyncpg.Record,
    ) -> None:
        """`pod_joined` / `pod_left`, keyed by when the membership began (one of each per
        membership)."""
        await self.events.record(
            conn,
            user_id,
            kind,
            occurred_at=dt.datetime.now(dt.UTC),
            pod_id=pod_id,
            dedupe_key=f"{pod_id}:{membership['joined_at'].isoformat()}",
            after=after,
        )

    async def get(self, principal: Principal, pod_id: uuid.UUID) -> Pod:
        return Pod.from_row(await self.visible_pod(principal, pod_id))

    async def list(self, principal: Principal, query: PodQuery) -> PodPage:
        limit, offset = _page(query.limit, query.offset)
        if query.category is not None:
            validation.one_of(query.category, "category", CATEGORIES)
        if query.difficulty is not None:
            validation.one_of(query.difficulty, "difficulty", DIFFICULTIES)
        search = query.search.strip() if query.search else None
        if search is not None and len(search) > 200:
            raise Invalid("search", "must be at most 200 characters")
        rows = await pods_db.list_pods(
            self.db.pool,
            principal.user_id,
            search=search or None,
            subject=query.subject,
            category=query.category,
            difficulty=query.difficulty,
            is_public=query.is_public,
            member_only=query.member,
            limit=limit,
            offset=offset,
        )
        total = rows[0]["total"] if rows else 0
        return PodPage([Pod.from_row(r) for r in rows], total, limit, offset)

    async def update(self, principal: Principal, pod_id: uuid.UUID, body: PodUpdate) -> Pod:
        given = {
            f: getattr(body, f)
            for f in body.__struct_fields__
            if getattr(body, f) is not msgspec.UNSET
        }
        if not given:
            raise Invalid("body", "no pod fields to change")
        for required in ("name", "subject", "timezone", "language"):
            if required in given and given[required] is None:
                raise Invalid(required, "must not be null")
        changes = _pod_values(given)
        await self.require_member(principal, pod_id, "admin")
        if changes.get("is_public"):
            self.gate.check(principal, "public_pod")
        async with self.db.transaction() as conn:
            pod = await pods_db.lock_pod(conn, pod_id)
            if pod is None:
                raise NotFound("pod not found")
            new_max = changes.get("max_members")
            if new_max is not None and new_max < pod["current_member_count"]:
                raise Invalid(
                    "maxMembers",
                    f"must be at least the current member count ({pod['current_member_count']})",
                )
            await pods_db.update_pod(conn, pod_id, changes)
        updated = await self.get(principal, pod_id)
        await self.live.event(f"pod:{pod_id}", "pod_updated", {"podId": str(pod_id)})
        return updated

    async def delete(self, principal: Principal, pod_id: uuid.UUID) -> None:
        await self.require_member(principal, pod_id, "owner")
        async with self.db.transaction() as conn:
            await pods_db.delete_pod(conn, pod_id)
        await self.live.event(f"pod:{pod_id}", "pod_deleted", {"podId": str(pod_id)})

    # --- members ---------------------------------------------------------------------------

    async def members(
        self, principal: Principal, pod_id: uuid.UUID, limit: int, offset: int
    ) -> MemberPage:
        limit, offset = _page(limit, offset)
        pod = await self.visible_pod(principal, pod_id)
        my_role = pod["my_role"] if pod["my_status"] == "active" else None
        if not pod["is_public"] and my_role is None:
            raise Forbidden("only members see who is in a private pod", code="not_a_member")
        include_banned = ranks_at_least(my_role, "moderator")
        rows = await pods_db.list_members(
            self.db.pool, pod_id, include_banned=include_banned, limit=limit, offset=offset
        )
        total = rows[0]["total"] if rows else 0
        members = [PodMember(**{k: r[k] for k in PodMember.__struct_fields__}) for r in rows]
        return MemberPage(members, total, limit, offset)

    async def join(self, principal: Principal, pod_id: uuid.UUID, body: JoinRequest) -> Membership:
        async with unit(self.db) as (conn, after):
            # The pod row lock serializes joins, leaves and bans of this pod, so the count and
            # the limit stay exact however many people join at once.
            pod = await pods_db.lock_pod(conn, pod_id)
            if pod is None or pod["status"] != "active":
                raise NotFound("pod not found")
            membership = await pods_db.get_membership(conn, pod_id, principal.user_id, lock=True)
            if membership is not None and membership["status"] == "banned":
                raise Forbidden("you are banned from this pod", code="banned")
            if membership is not None and membership["status"] == "active":
                return Membership(
                    pod_id,
                    principal.user_id,
                    membership["role"],
                    "active",
                    membership["joined_at"],
                    pod["current_member_count"],
                )
            invitation = await self._usable_invitation(conn, pod_id, principal, body)
            if not pod["is_public"] and invitation is None:
                if body.invitation_code:
                    raise Forbidden("invitation is not valid for you", code="invalid_invitation")
                raise NotFound("pod not found")
            if pod["current_member_count"] >= pod["max_members"]:
                raise Conflict("this pod is full", code="pod_full")
            row = await pods_db.upsert_active_membership(conn, pod_id, principal.user_id, "member")
            await self._membership_event(
                conn, after, Kind.POD_JOINED, pod_id, principal.user_id, row
            )
            count = await pods_db.change_member_count(conn, pod_id, +1)
            if invitation is not None:
                await pods_db.mark_invitation(conn, invitation["id"], "accepted")
        await self.live.event(
            f"pod:{pod_id}",
            "member_joined",
            {
                "podId": str(pod_id),
                "userId": str(principal.user_id),
                "username": principal.username,
                "memberCount": count,
            },
        )
        return Membership(pod_id, principal.user_id, row["role"], "active", row["joined_at"], count)

    async def _usable_invitation(
        self,
        conn: Conn,
        pod_id: uuid.UUID,
        principal: Principal,
        body: JoinRequest,
    ) -> asyncpg.Record | None:
        if body.invitation_code:
            inv = await pods_db.invitation_by_code(conn, pod_id, body.invitation_code)
            if inv is None:
                raise Forbidden("invitation is not valid for you", code="invalid_invitation")
            addressed_to_me = inv["invitee_id"] == principal.user_id or (
                inv["invitee_email"] is not None
                and inv["invitee_email"].lower() == principal.email.lower()
            )
            if not addressed_to_me:
                raise Forbidden("invitation is not valid for you", code="invalid_invitation")
            if inv["status"] != "pending":
                raise Conflict(f"invitation is {inv['status']}", code="invitation_used")
            if inv["expires_at"] is not None and inv["expires_at"] <= dt.datetime.now(dt.UTC):
                await pods_db.mark_invitation(conn, inv["id"], "expired")
                raise Conflict("invitation has expired", code="invitation_expired")
            return inv
        return await pods_db.pending_invitation_for(
            conn, pod_id, principal.user_id, principal.email
        )

    async def leave(self, principal: Principal, pod_id: uuid.UUID) -> None:
        async with unit(self.db) as (conn, after):
            pod = await pods_db.lock_pod(conn, pod_id)
            if pod is None:
                raise NotFound("pod not found")
            membership = await pods_db.get_membership(conn, pod_id, principal.user_id, lock=True)
            if membership is None or membership["status"] != "active":
                if not pod["is_public"]:
                    raise NotFound("pod not found")
                raise Conflict("you are not a member of this pod", code="not_a_member")
            if membership["role"] == "owner":
                raise Conflict(
                    "the owner cannot leave; transfer ownership or delete the pod",
                    code="owner_cannot_leave",
                )
            await pods_db.delete_membership(conn, pod_id, principal.user_id)
            await self._membership_event(
                conn, after, Kind.POD_LEFT, pod_id, principal.user_id, membership
            )
            count = await pods_db.change_member_count(conn, pod_id, -1)
        await self._evict_everywhere(pod_id, principal.user_id)
        await self.live.event(
            f"pod:{pod_id}",
            "member_left",
            {"podId": str(pod_id), "userId": str(principal.user_id), "memberCount": count},
        )

    async def _target_for_moderation(
        self, conn: Conn, principal: Principal, pod_id: uuid.UUID, user_id: uuid.UUID
    ) -> tuple[str, asyncpg.Record | None]:
        """Lock the pod, check the actor outranks the target; return (actor role, target)."""
        if await pods_db.lock_pod(conn, pod_id) is None:
            raise NotFound("pod not found")
        actor = await pods_db.get_membership(conn, pod_id, principal.user_id)
        if actor is None or actor["status"] != "active":
            raise Forbidden("you are not a member of this pod", code="not_a_member")
        if not ranks_at_least(actor["role"], "moderator"):
            raise Forbidden("this needs the moderator role or higher", code="insufficient_role")
        if user_id == principal.user_id:
            raise Conflict("you cannot do this to yourself", code="self_action")
        target = await pods_db.get_membership(conn, pod_id, user_id, lock=True)
        if target is not None and ROLE_RANK[target["role"]] >= ROLE_RANK[actor["role"]]:
            raise Forbidden(
                "you can only act on members ranked below you", code="insufficient_role"
            )
        return actor["role"], target

    async def _evict_everywhere(self, pod_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Take `user_id`'s sockets out of the pod's room and its sessions' rooms, on every node
        (they lost the pod: its sessions are for its members only)."""
        rooms = [f"pod:{pod_id}"]
        for more in self.rooms_lost_with:
            rooms += await more(pod_id, user_id)
        await asyncio.gather(*(self.live.evict(room, user_id) for room in rooms))

    async def remove_member(
        self, principal: Principal, pod_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        await self.visible_pod(principal, pod_id)
        async with unit(self.db) as (conn, after):
            _, target = await self._target_for_moderation(conn, principal, pod_id, user_id)
            if target is None or target["status"] != "active":
                raise NotFound("member not found")
            await pods_db.delete_membership(conn, pod_id, user_id)
            await self._membership_event(conn, after, Kind.POD_LEFT, pod_id, user_id, target)
            count = await pods_db.change_member_count(conn, pod_id, -1)
        await self._evict_everywhere(pod_id, user_id)
        await self.live.event(
            f"pod:{pod_id}",
            "member_removed",
            {"podId": str(pod_id), "userId": str(user_id), "memberCount": count},
        )

    async def ban_member(self, principal: Principal, pod_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.visible_pod(principal, pod_id)
        if await pods_db.get_user_brief(self.db.pool, user_id) is None:
            raise NotFound("user not found")
        async with unit(self.db) as (conn, after):
            _, target = await self._target_for_moderation(conn, principal, pod_id, user_id)
            if target is not None and target["status"] == "banned":
                return
            await pods_db.ban_membership(conn, pod_id, user_id)
            count = None
            if target is not None and target["status"] == "active":
                await self._membership_event(conn, after, Kind.POD_LEFT, pod_id, user_id, target)
                count = await pods_db.change_member_count(conn, pod_id, -1)
        await self._evict_everywhere(pod_id, user_id)
        await self.live.event(
            f"pod:{pod_id}",
            "member_banned",
            {"podId": str(pod_id), "userId": str(user_id), "memberCount": count},
        )

    async def unban_member(
        self, principal: Principal, pod_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        await self.visible_pod(principal, pod_id)
        async with self.db.transaction() as conn:
            _, target = await self._target_for_moderation(conn, principal, pod_id, user_id)
            if target is None or target["status"] != "banned":
                raise NotFound("no ban for this user")
            await pods_db.delete_membership(conn, pod_id, user_id)

    async def set_role(
        self, principal: Principal, pod_id: uuid.UUID, user_id: uuid.UUID, body: MemberUpdate
    ) -> PodMember:
        await self.visible_pod(principal, pod_id)
        new_role = body.role
        async with self.db.transaction() as conn:
            if await pods_db.lock_pod(conn, pod_id) is None:
                raise NotFound("pod not found")
            actor = await pods_db.get_membership(conn, pod_id, principal.user_id)
            if actor is None or actor["status"] != "active":
                raise Forbidden("you are not a member of this pod", code="not_a_member")
            target = await pods_db.get_membership(conn, pod_id, user_id, lock=True)
            if target is None or target["status"] != "active":
                raise NotFound("member not found")
            if user_id == principal.user_id:
                raise Conflict("you cannot change your own role", code="self_action")
            actor_rank = ROLE_RANK[actor["role"]]
            if new_role == "owner":
                if actor["role"] != "owner":
                    raise Forbidden(
                        "only the owner can transfer ownership", code="insufficient_role"
                    )
                # The old owner stays on as an admin; a pod always has exactly one owner.
                await pods_db.set_membership(
                    conn, pod_id, principal.user_id, role="admin", status="active"
                )
            elif actor_rank < ROLE_RANK["admin"]:
                raise Forbidden("this needs the admin role or higher", code="insufficient_role")
            elif ROLE_RANK[target["role"]] >= actor_rank or ROLE_RANK[new_role] >= actor_rank:
                raise Forbidden(
                    "you can only change roles below your own", code="insufficient_role"
                )
            await pods_db.set_membership(conn, pod_id, user_id, role=new_role, status="active")
        row = await pods_db.get_member(self.db.pool, pod_id, user_id)
        if row is None:
            raise RuntimeError("the statement returned no row")
        await self.live.event(
            f"pod:{pod_id}",
            "member_role_changed",
            {"podId": str(pod_id), "userId": str(user_id), "role": new_role},
        )
        return PodMember(**{k: row[k] for k in PodMember.__struct_fields__})

    # --- invitations -----------------------------------------------------------------------

    async def invite(
        self, principal: Principal, pod_id: uuid.UUID, body: InviteRequest
    ) -> tuple[Invitation, bool]:
        """Invite by email or user id. Returns (invitation, created); an existing pending
        invitation for the same person is returned rather than duplicated.

        An invitation by email answers the same whether or not the address has an account (or
        is a member, or banned): the inviter learns nothing about who uses which address. The
        account, if any, is still noted on the invitation so its owner may join with it."""
        if (body.email is None) == (body.user_id is None):
            raise Invalid("email", "give exactly one of email or userId")
        message = validation.optional_text(body.message, "message", 1000)
        invitee_id: uuid.UUID | None = None
        email: str | None = None
        if body.user_id is not None:
            invitee_id = validation.parse_uuid(body.user_id, "userId")
            invitee = await pods_db.get_user_brief(self.db.pool, invitee_id)
            if invitee is None:
                raise Invalid("userId", "no user has this id")
        else:
            if body.email is None:
                raise RuntimeError("body.email is missing")
            email = validation.email(body.email)
            invitee_id = await pods_db.find_user_id_by_email(self.db.pool, email)
        pod = await self.visible_pod(principal, pod_id)
        await self.require_member(principal, pod_id, "admin")
        if email is not None:
            self.gate.check(principal, "invite_email")
        created = False
        notification: asyncpg.Record | None = None
        async with self.db.transaction() as conn:
            if await pods_db.lock_pod(conn, pod_id) is None:
                raise NotFound("pod not found")
            notify = invitee_id is not None
            if invitee_id is not None:
                existing = await pods_db.get_membership(conn, pod_id, invitee_id)
                notify = existing is None or existing["status"] not in ("active", "banned")
                if email is None and existing is not None and existing["status"] == "active":
                    raise Conflict("this user is already a member", code="already_member")
                if email is None and existing is not None and existing["status"] == "banned":
                    raise Conflict(
                        "this user is banned from the pod; unban them first", code="banned"
                    )
            if email is not None:
                inv = await pods_db.pending_invitation_for(conn, pod_id, None, email)
            else:
                inv = await pods_db.pending_invitation_for(conn, pod_id, invitee_id, None)
            if inv is None:
                inv = await pods_db.insert_invitation(
                    conn,
                    {
                        "pod_id": pod_id,
                        "inviter_id": principal.user_id,
                        "invitee_email": email,
                        "invitee_id": invitee_id,
                        "invitation_code": secrets.token_urlsafe(18),
                        "message": message,
                        "expires_at": dt.datetime.now(dt.UTC) + INVITATION_TTL,
                    },
                )
                created = True
                if invitee_id is None and email is not None:
                    await self._email_invitation(conn, principal, pod, inv, email, message)
                if invitee_id is not None and notify:
                    notification = await self.notifications.store(
                        conn,
                        NewNotification(
                            recipient_id=invitee_id,
                            notification_type="pod_invite",
                            title=f"{principal.username} invited you to {pod['name']}",
                            message=message,
                            action_url=f"/pods/{pod_id}",
                            metadata={
                                "podId": str(pod_id),
                                "invitationId": str(inv["id"]),
                                "invitationCode": inv["invitation_code"],
                            },
                            sender_id=principal.user_id,
                        ),
                    )
        if notification is not None:
            await self.notifications.push(notification)
        invitation = Invitation(**dict(inv))
        if email is not None:
            invitation.invitee_id = None  # whether the address has an account stays private
        return invitation, created

    async def _email_invitation(
        self,
        conn: Conn,
        principal: Principal,
        pod: asyncpg.Record,
        inv: asyncpg.Record,
        email: str,
        message: str | None,
    ) -> None:
        """An address without an account gets the invitation by email, with a link to sign
        up: registering with its code joins the pod."""
        jobs = self.notifications.jobs
        if jobs is None:
            return
        base = self.notifications.base_url
        code = inv["invitation_code"]
        quoted = f'\n\n{principal.username} wrote: "{message}"' if message else ""
        await links.enqueue_email(
            jobs,
            conn,
            to=email,
            first_name="there",
            subject=f"{principal.username} invited you to {pod['name']} on PeerSpark",
            message=f"{principal.username} invited you to study with the pod {pod['name']} on "
            f"PeerSpark.{quoted}",
            link=f"{base}/register?invitation={code}",
            link_label="Sign up and join",
            note=f"The invitation works until {inv['expires_at']:%Y-%m-%d %H:%M} UTC. Sign up "
            "with this address to use it.",
        )

    async def join_with_invitation(self, principal: Principal, code: str) -> uuid.UUID | None:
        """Join the pod of an invitation code (a newcomer who registered through its link);
        None when the code is unknown or cannot be used (the account is created anyway)."""
        if not code or len(code) > 100:
            return None
        pod_id = await pods_db.pod_of_invitation(self.db.pool, code)
        if pod_id is None:
            return None
        try:
            await self.join(principal, pod_id, JoinRequest(invitation_code=code))
        except AppError as exc:
            log.info("invitation code not used at registration: %s", exc.message)
            return None
        return pod_id

    # --- analytics ---------------------------------------------------------------------------

    async def analytics(
        self, principal: Principal, pod_id: uuid.UUID, query: PodAnalyticsQuery
    ) -> PodAnalytics:
        """The pod's figures (README, "Pod analytics"): active = did something in the pod in
        the window; engagement = active / members; growth = net joins in 30 days / members
        30 days ago."""
        if not 1 <= query.days <= 90:
            raise Invalid("days", "must be between 1 and 90")
        await self.require_member(principal, pod_id)
        row = await analytics_db.pod_figures(self.db.pool, pod_id, query.days)
        members = int(row["member_count"])
        net = int(row["joined_30"]) - int(row["left_30"])
        before = members - net
        top = await analytics_db.top_contributors(self.db.pool, pod_id, TOP_CONTRIBUTORS)
        return PodAnalytics(
            member_count=members,
            active_members=int(row["active_members"]),
            total_sessions=int(row["total_sessions"]),
            total_resources=int(row["total_resources"]),
            engagement_rate=round(row["active_members"] / members, 4) if members else 0.0,
            growth_rate=round(net / before, 4) if before > 0 else float(net > 0),
            new_members_last_30_days=int(row["joined_30"]),
            posts_last_30_days=int(row["posts_30"]),
            left_last_30_days=int(row["left_30"]),
            window_days=query.days,
            top_contributors=[Contributor(**dict(r)) for r in top],
        )


# the application's key for what this module provides (typed app state)
PODS = web.AppKey("pods", PodService)
