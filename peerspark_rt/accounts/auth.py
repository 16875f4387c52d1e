"""Accounts and sessions: register, log in, rotate refresh tokens, revoke, authenticate."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from ..analytics.events import Analytics, Kind
from ..config import Settings
from ..errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, Unauthorized
from ..infra import validation
from ..infra.aftercommit import Deferred, unit
from ..infra.dbtypes import Conn
from ..infra.jobs import JobQueue
from ..infra.pool import Database
from . import db as users_db
from . import links
from .passwords import hash_password, needs_rehash, verify_password
from .ratelimit import Limit, RateLimiter, enforce
from .tokens import AccessClaims, TokenIssuer, jti_digest, new_jti
from .users import EDUCATION_LEVELS, UserProfile

log = logging.getLogger(__name__)

# The spec: 5 failed logins per 15 minutes, per account and address.
LOGIN_LIMIT = Limit("login", 5, 15 * 60)
LOGIN_WINDOW = 15 * 60
# Longest values looked at before anything else happens (the columns hold no more).
MAX_EMAIL = 255
MAX_PASSWORD = 128
MAX_TOKEN = 4096


def limit_key(*parts: str | None) -> str:
    """A rate-limit key for what a client sent: a fixed-size hash, so no client value of any
    size ends up in a Redis key (or in the in-process table) as given."""
    joined = "\x1f".join(p or "-" for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RegisterRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: str
    username: str
    password: str
    first_name: str
    last_name: str
    education_level: str | None = None
    institution: str | None = None
    # the code of a pod invitation emailed to this address: registering joins the pod
    invitation_code: str | None = None


class LoginRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: str
    password: str
    remember_me: bool = False


class RefreshRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    refresh_token: str


class AuthResult(msgspec.Struct, rename="camel", omit_defaults=True):
    user: UserProfile
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID
    # registering with a pod invitation's code: the pod joined (None: no code, or not usable)
    joined_pod_id: uuid.UUID | None = None


class TokenPair(msgspec.Struct, rename="camel"):
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


class SessionView(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    device_info: dict[str, Any] | None
    ip_address: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime
    remember_me: bool
    current: bool


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None

    def device_info(self) -> dict[str, Any]:
        return {"userAgent": (self.user_agent or "")[:512]}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request or websocket."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    username: str
    email: str
    role: str
    is_premium: bool
    email_verified: bool = False
    # when the login session began (None outside one): recent sign-ins count as re-authentication
    signed_in_at: dt.datetime | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_platform_moderator(self) -> bool:
        return self.role in ("moderator", "admin")


# The session id of a principal that acts outside any login (see principal_for).
NO_LOGIN_SESSION = uuid.UUID(int=0)

SessionRevokedHook = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]


def _bounded(value: str, field: str, max_len: int) -> None:
    if len(value) > max_len:
        raise Invalid(field, f"must be at most {max_len} characters")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        limiter: RateLimiter,
        analytics: Analytics,
        jobs: JobQueue | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.limiter = limiter
        self.jobs = jobs
        self.analytics = analytics
        self.tokens = TokenIssuer(
            settings.jwt_secret, settings.jwt_refresh_secret, settings.access_token_ttl
        )
        self.register_limit = Limit("register", settings.registration_rate_limit, 3600)
        self.address_failures = Limit(
            "login-address", settings.login_failures_per_address, LOGIN_WINDOW
        )
        self.account_failures = Limit(
            "login-account", settings.login_failures_per_account, LOGIN_WINDOW
        )
        # Called with (user_id, session_id) after a session is deleted, so live sockets close.
        self.on_session_revoked: list[SessionRevokedHook] = []

    # --- issuing -------------------------------------------------------------------------

    def _session_ttl(self, remember_me: bool) -> int:
        return self.settings.remember_me_ttl if remember_me else self.settings.refresh_token_ttl

    async def _open_session(
        self, conn: Conn, claims_row: Any, client: ClientInfo, remember_me: bool
    ) -> TokenPair:
        jti = new_jti()
        expires_at = _now() + dt.timedelta(seconds=self._session_ttl(remember_me))
        session = await users_db.insert_session(
            conn,
            user_id=claims_row["id"],
            session_token=secrets.token_urlsafe(32),
            refresh_digest=jti_digest(jti),
            device_info=client.device_info(),
            ip_address=client.ip,
            expires_at=expires_at,
            remember_me=remember_me,
        )
        return self._pair(claims_row, claims_row["id"], session["id"], jti, expires_at)

    def _pair(
        self,
        row: Any,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        jti: str,
        expires_at: dt.datetime,
        issued_at: dt.datetime | None = None,
    ) -> TokenPair:
        """The tokens of a session. Given `issued_at` the same inputs give the same tokens
        (HS256 over the same claims), which is how the grace window repeats a pair."""
        iat = None if issued_at is None else int(issued_at.timestamp())
        access = self.tokens.access_token(
            AccessClaims(
                user_id=user_id,
                session_id=session_id,
                username=row["username"],
                email=row["email"],
                role=row["role"],
                is_premium=row["is_premium"],
            ),
            issued_at=iat,
        )
        refresh = self.tokens.refresh_token(
            user_id, session_id, jti, int(expires_at.timestamp()), issued_at=iat
        )
        return TokenPair(access, refresh, self.tokens.access_ttl, session_id)

    # --- use cases -----------------------------------------------------------------------

    async def register(self, body: RegisterRequest, client: ClientInfo) -> AuthResult:
        email = validation.email(body.email)
        username = validation.username(body.username.strip())
        first = validation.text(body.first_name, "firstName", max_len=100)
        last = validation.text(body.last_name, "lastName", max_len=100)
        _bounded(body.password, "password", MAX_PASSWORD)
        await enforce(
            self.limiter,
            self.register_limit,
            limit_key(client.ip),
            f"at most {self.register_limit.limit} sign-ups an hour from one address",
        )
        validation.password(body.password, email=email, username=username, names=(first, last))
        if body.education_level is not None:
            validation.one_of(body.education_level, "educationLevel", EDUCATION_LEVELS)
        institution = (
            validation.text(body.institution, "institution", max_len=255)
            if body.institution
            else None
        )
        password_hash = await hash_password(body.password)
        values = {
            "email": email,
            "username": username,
            "password_hash": password_hash,
            "first_name": first,
            "last_name": last,
            "education_level": body.education_level,
            "institution": institution,
        }
        try:
            async with unit(self.db) as (conn, after):
                row = await users_db.insert_user(conn, values)
                pair = await self._open_session(conn, row, client, remember_me=False)
                await self.send_verification(conn, row["id"], email, first)
                await self.analytics.record(
                    conn,
                    row["id"],
                    Kind.REGISTERED,
                    occurred_at=dt.datetime.now(dt.UTC),
                    dedupe_key="registered",
                    after=after,
                )
                await self._record_login(conn, after, row["id"], pair.session_id)
        except asyncpg.UniqueViolationError:
            await self._raise_taken(email, username)
            raise
        return AuthResult(UserProfile.from_row(row), *msgspec.structs.astuple(pair))

    async def send_verification(
        self,
        conn: Conn,
        user_id: uuid.UUID,
        email: str,
        first_name: str,
        *,
        purpose: str = "verify_email",
    ) -> None:
        """Email a single-use link that verifies `email` (for `change_email`: makes it the
        account's address), in the caller's transaction."""
        if self.jobs is None:
            return
        ttl = self.settings.email_verification_ttl
        token = await links.issue(conn, user_id=user_id, purpose=purpose, email=email, ttl=ttl)
        change = purpose == "change_email"
        await links.enqueue_email(
            self.jobs,
            conn,
            to=email,
            first_name=first_name,
            subject="Confirm your new email address" if change else "Verify your email address",
            message=(
                "Confirm that this is the address you want to sign in to PeerSpark with."
                if change
                else "Welcome to PeerSpark! Confirm that this address is yours."
            ),
            link=f"{self.settings.base_url}/verify-email?token={token}",
            link_label="Confirm this address" if change else "Verify my email",
            note=f"The link works once, for {links.hours(ttl)}.",
            user_id=user_id,
        )

    async def sign_in_as(self, user_id: uuid.UUID, client: ClientInfo) -> AuthResult:
        """A new login session for a user who proved who they are another way (a provider)."""
        async with unit(self.db) as (conn, after):
            row = await users_db.get_profile(conn, user_id)
            if row is None:
                raise Unauthorized("account not found", code="invalid_credentials")
            if row["account_status"] != "active":
                raise Forbidden(f"account is {row['account_status']}", code="account_inactive")
            pair = await self._open_session(conn, row, client, remember_me=False)
            await self._record_login(conn, after, user_id, pair.session_id)
        await users_db.touch_last_active(self.db.pool, user_id)
        return AuthResult(UserProfile.from_row(row), *msgspec.structs.astuple(pair))

    async def end_sessions(self, user_id: uuid.UUID, keep: uuid.UUID | None = None) -> int:
        """End every login session of the user but `keep`, closing their sockets at once."""
        ended = await users_db.delete_sessions(self.db.pool, user_id, keep)
        for session_id in ended:
            await self._revoked(user_id, session_id)
        return len(ended)

    async def revoke_all(self, user_id: uuid.UUID, session_ids: list[uuid.UUID]) -> None:
        """Close the sockets of login sessions already deleted (in the caller's transaction)."""
        for session_id in session_ids:
            await self._revoked(user_id, session_id)

    async def _record_login(
        self, conn: Conn, after: Deferred, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> None:
        """A login opens a login session: one event per session."""
        await self.analytics.record(
            conn,
            user_id,
            Kind.LOGIN,
            occurred_at=dt.datetime.now(dt.UTC),
            dedupe_key=str(session_id),
            after=after,
        )

    async def _raise_taken(self, email: str, username: str) -> None:
        email_taken, username_taken = await users_db.existing_identities(
            self.db.pool, email, username
        )
        details = []
        if email_taken:
            details.append({"field": "email", "reason": "already registered"})
        if username_taken:
            details.append({"field": "username", "reason": "already taken"})
        which = " and ".join(d["field"] for d in details) or "email or username"
        raise Conflict(f"{which} already in use", code="already_exists", details=details)

    async def login(self, body: LoginRequest, client: ClientInfo) -> AuthResult:
        _bounded(body.email, "email", MAX_EMAIL)
        _bounded(body.password, "password", MAX_PASSWORD)
        email = body.email.strip().lower()
        if not email:
            raise Invalid("email", "must not be empty")
        if not body.password:
            raise Invalid("password", "must not be empty")
        # Three limits, all keyed by hashes: failures from one address whatever the accounts
        # (one machine guessing many), failures on one account whatever the addresses (many
        # machines guessing one), and the spec's per account and address. The first two count
        # failures only, so nobody's own successful logins reset them.
        address_key, account_key = limit_key(client.ip), limit_key(email)
        for limit, key, whose in (
            (self.address_failures, address_key, "from this address"),
            (self.account_failures, account_key, "for this account"),
        ):
            seen = await self.limiter.peek(limit, key)
            if seen.count >= limit.limit:
                raise RateLimited(
                    f"too many failed logins {whose}; try again later",
                    retry_after=seen.retry_after,
                )
        # Every attempt counts and a success clears the window, so what is limited is failures.
        # INCR is atomic, which keeps the limit exact under concurrent attempts.
        pair_key = limit_key(email, client.ip)
        state = await self.limiter.hit(LOGIN_LIMIT, pair_key)
        if state.exceeded:
            raise RateLimited(
                "too many failed logins; try again later", retry_after=state.retry_after
            )
        row = await users_db.get_credentials(self.db.pool, email)
        ok = await verify_password(row["password_hash"] if row else None, body.password)
        if not ok or row is None:
            await self.limiter.hit(self.address_failures, address_key)
            await self.limiter.hit(self.account_failures, account_key)
            raise Unauthorized("email or password is incorrect", code="invalid_credentials")
        if row["account_status"] != "active":
            raise Forbidden(f"account is {row['account_status']}", code="account_inactive")
        await self.limiter.reset(LOGIN_LIMIT, pair_key)
        await self.limiter.reset(self.account_failures, account_key)
        if needs_rehash(row["password_hash"]):
            await users_db.set_password_hash(
                self.db.pool, row["id"], await hash_password(body.password)
            )
        async with unit(self.db) as (conn, after):
            pair = await self._open_session(conn, row, client, remember_me=body.remember_me)
            profile = await users_db.get_profile(conn, row["id"])
            await self._record_login(conn, after, row["id"], pair.session_id)
        if profile is None:
            raise RuntimeError("profile is missing")
        await users_db.touch_last_active(self.db.pool, row["id"])
        return AuthResult(UserProfile.from_row(profile), *msgspec.structs.astuple(pair))

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate the session's refresh token. The token rotated last, presented again within
        REFRESH_REUSE_GRACE seconds of its rotation (two tabs refreshing at once), gets the
        same new pair; any other spent token is taken for a stolen one and ends the session."""
        if len(refresh_token) > MAX_TOKEN:
            raise Unauthorized("token is invalid", code="invalid_token")
        claims = self.tokens.decode_refresh(refresh_token)
        reused = False
        digest = jti_digest(claims.jti)
        async with self.db.transaction() as conn:
            row = await users_db.lock_session(conn, claims.session_id)
            if row is None or row["user_id"] != claims.user_id:
                raise Unauthorized("session has ended", code="session_revoked")
            if row["expires_at"] <= _now():
                await users_db.delete_session(conn, claims.session_id, claims.user_id)
                raise Unauthorized("session has expired", code="session_expired")
            if row["account_status"] != "active":
                raise Unauthorized("account is not active", code="account_inactive")
            successor = self.tokens.successor_jti(claims.jti)
            if row["refresh_token"] == digest:
                rotated_at = _now().replace(microsecond=0)
                expires_at = rotated_at + dt.timedelta(
                    seconds=self._session_ttl(row["remember_me"])
                )
                await users_db.rotate_session(
                    conn, claims.session_id, jti_digest(successor), digest, rotated_at, expires_at
                )
                pair = self._pair(
                    row, claims.user_id, claims.session_id, successor, expires_at, rotated_at
                )
            elif self._within_grace(row, digest, successor):
                pair = self._pair(
                    row,
                    claims.user_id,
                    claims.session_id,
                    successor,
                    row["expires_at"],
                    row["rotated_at"],
                )
            else:
                # A validly signed but already-rotated token: someone replayed it. Whoever holds
                # the newer one may be the thief, so end the whole session.
                await users_db.delete_session(conn, claims.session_id, claims.user_id)
                reused = True
        if reused:
            log.warning(
                "refresh token reuse; session revoked",
                extra={"user_id": str(claims.user_id), "session_id": str(claims.session_id)},
            )
            await self._revoked(claims.user_id, claims.session_id)
            raise Unauthorized(
                "refresh token was already used; the session has been revoked",
                code="refresh_token_reused",
            )
        return pair

    def _within_grace(self, row: Any, digest: str, successor: str) -> bool:
        """`digest` is the token rotated last, a moment ago, into the token now current."""
        rotated_at = row["rotated_at"]
        return (
            row["previous_refresh_token"] == digest
            and row["refresh_token"] == jti_digest(successor)
            and rotated_at is not None
            and (_now() - rotated_at).total_seconds() <= self.settings.refresh_reuse_grace
        )

    async def authenticate(self, access_token: str) -> Principal:
        """Check the token and that its session is still alive; raises Unauthorized."""
        claims = self.tokens.decode_access(access_token)
        return await self.session_principal(claims.session_id, claims.user_id)

    async def authenticate_for_read(self, access_token: str) -> tuple[Principal, int | None]:
        """`authenticate`, and the cached reads' generation read in the same statement (for a
        request that reads from the cache before it writes anything: infra/readcache.py)."""
        claims = self.tokens.decode_access(access_token)
        row = await users_db.session_principal(
            self.db.pool, claims.session_id, claims.user_id, read_generation=True
        )
        caller = self._principal(row, claims.session_id)  # raises when there is no row
        return caller, row["read_generation"] if row is not None else None

    async def session_principal(self, session_id: uuid.UUID, user_id: uuid.UUID) -> Principal:
        """The caller of a login session that is still alive (an access token names one, and
        so does the web page's cookie); raises Unauthorized."""
        row = await users_db.session_principal(self.db.pool, session_id, user_id)
        return self._principal(row, session_id)

    @staticmethod
    def _principal(row: Any, session_id: uuid.UUID) -> Principal:
        if row is None:
            raise Unauthorized("session has ended", code="session_revoked")
        if row["expires_at"] <= _now():
            raise Unauthorized("session has expired", code="session_expired")
        if row["account_status"] != "active":
            raise Unauthorized("account is not active", code="account_inactive")
        return Principal(
            user_id=row["user_id"],
            session_id=session_id,
            username=row["username"],
            email=row["email"],
            role=row["role"],
            is_premium=row["is_premium"],
            email_verified=row["is_verified"],
            signed_in_at=row["created_at"],
        )

    def short_access_token(self, principal: Principal, ttl: int) -> str:
        """An access token for `principal`'s login session that expires after `ttl` seconds
        (the web page's socket token: the page holds no long-lived token)."""
        issuer = TokenIssuer(self.settings.jwt_secret, self.settings.jwt_refresh_secret, ttl)
        claims = AccessClaims(
            user_id=principal.user_id,
            session_id=principal.session_id,
            username=principal.username,
            email=principal.email,
            role=principal.role,
            is_premium=principal.is_premium,
        )
        return issuer.access_token(claims)

    async def principal_for(self, user_id: uuid.UUID) -> Principal | None:
        """The user as a principal outside any login (for work done on their behalf, such as
        publishing content a moderator approved); None when the account is not active."""
        row = await users_db.get_profile(self.db.pool, user_id)
        if row is None or row["account_status"] != "active":
            return None
        return Principal(
            user_id=row["id"],
            session_id=NO_LOGIN_SESSION,
            username=row["username"],
            email=row["email"],
            role=row["role"],
            is_premium=row["is_premium"],
            email_verified=row["is_verified"],
        )

    async def logout(self, principal: Principal) -> None:
        await self.delete_session(principal, principal.session_id)

    async def list_sessions(self, principal: Principal) -> list[SessionView]:
        rows = await users_db.list_sessions(self.db.pool, principal.user_id)
        return [SessionView(**dict(r), current=r["id"] == principal.session_id) for r in rows]

    async def delete_session(self, principal: Principal, session_id: uuid.UUID) -> None:
        if not await users_db.delete_session(self.db.pool, session_id, principal.user_id):
            raise NotFound("session not found")
        await self._revoked(principal.user_id, session_id)

    async def _revoked(self, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        for hook in self.on_session_revoked:
            try:
                await hook(user_id, session_id)
            except Exception:
                log.exception("session revocation hook failed")


# the application's key for what this module provides (typed app state)
AUTH = web.AppKey("auth", AuthService)
