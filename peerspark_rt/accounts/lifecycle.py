"""An account's life after sign-up: verifying the email address, changing the password or the
address, resetting a forgotten password by email.

Every link is single-use and expires (account_tokens keeps only its SHA-256). A reset request
answers the same whether or not the address has an account, and is rate limited by address and
by client. Changing or resetting the password ends the account's other login sessions (a reset:
all of them), closing their sockets at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg
import msgspec
from aiohttp import web

from ..errors import BadRequest, Conflict, Forbidden, Invalid, NotFound
from ..infra import validation
from ..infra.dbtypes import Conn
from ..infra.jobs import JobQueue
from . import db as users_db
from . import links
from .auth import MAX_EMAIL, MAX_PASSWORD, AuthService, ClientInfo, Principal, limit_key
from .db import tokens as tokens_db
from .passwords import hash_password, verify_password
from .ratelimit import Limit, enforce

log = logging.getLogger(__name__)

MAX_TOKEN = 256


class VerifyEmailRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    token: str


class EmailVerified(msgspec.Struct, rename="camel"):
    user_id: uuid.UUID
    email: str
    is_verified: bool


class PasswordChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    current_password: str
    new_password: str


class PasswordChanged(msgspec.Struct, rename="camel"):
    other_sessions_ended: int


class ResetRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: str


class ResetConfirm(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    token: str
    new_password: str


class EmailChange(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    new_email: str
    password: str


class Accepted(msgspec.Struct, rename="camel"):
    """A request taken on: what happens next is said in `message` (and arrives by email)."""

    message: str


RESET_SENT = Accepted(
    "If an account uses this address, an email with a link to choose a new password is on its way."
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _bounded_token(token: str) -> str:
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        raise BadRequest("this link is not valid", code="invalid_token")
    return token


class AccountService:
    def __init__(self, auth: AuthService, jobs: JobQueue) -> None:
        self.auth = auth
        self.db = auth.db
        self.settings = auth.settings
        self.limiter = auth.limiter
        self.jobs = jobs
        per_hour = self.settings.password_reset_rate_limit
        self.reset_per_email = Limit("reset-email", per_hour, 3600)
        self.reset_per_address = Limit("reset-address", per_hour, 3600)
        self.resend_limit = Limit("verify-resend", per_hour, 3600)

    # --- the email address -------------------------------------------------------------

    async def resend_verification(self, principal: Principal) -> Accepted:
        await enforce(
            self.limiter,
            self.resend_limit,
            limit_key(str(principal.user_id)),
            f"at most {self.resend_limit.limit} verification emails an hour",
        )
        async with self.db.transaction() as conn:
            row = await users_db.credentials_by_id(conn, principal.user_id)
            if row is None:
                raise NotFound("user not found")
            if row["is_verified"]:
                raise Conflict("your email address is already verified", code="already_verified")
            await self.auth.send_verification(conn, row["id"], row["email"], row["first_name"])
        return Accepted(f"A verification link is on its way to {row['email']}.")

    async def verify_email(self, body: VerifyEmailRequest) -> EmailVerified:
        """Use a verification link: the address is verified (a new address becomes the
        account's). Refused when unknown (400), used or expired (409)."""
        digest = links.token_digest(_bounded_token(body.token))
        async with self.db.transaction() as conn:
            row = await self._usable(conn, digest, ("verify_email", "change_email"))
            if row["purpose"] == "verify_email":
                if row["email"].lower() != row["account_email"].lower():
                    raise Conflict(
                        "this link was for an address the account no longer uses",
                        code="token_stale",
                    )
                await conn.execute(
                    "UPDATE users SET is_verified = TRUE, updated_at = NOW() WHERE id = $1",
                    row["user_id"],
                )
            else:
                try:
                    await conn.execute(
                        """UPDATE users SET email = $2, is_verified = TRUE, updated_at = NOW()
                            WHERE id = $1""",
                        row["user_id"],
                        row["email"],
                    )
                except asyncpg.UniqueViolationError:
                    raise Conflict(
                        "another account uses this address now", code="email_taken"
                    ) from None
                await tokens_db.retire(conn, row["user_id"], ("verify_email", "reset_password"))
            await tokens_db.mark_used(conn, row["id"])
        return EmailVerified(row["user_id"], row["email"], True)

    async def _usable(self, conn: Conn, digest: str, purposes: tuple[str, ...]) -> asyncpg.Record:
        row = await tokens_db.lock(conn, digest, purposes)
        if row is None or row["account_status"] != "active":
            raise BadRequest("this link is not valid", code="invalid_token")
        if row["used_at"] is not None:
            raise Conflict("this link was already used", code="token_used")
        if row["expires_at"] <= _now():
            raise Conflict("this link has expired; ask for a new one", code="token_expired")
        return row

    async def change_email(self, principal: Principal, body: EmailChange) -> Accepted:
        """Ask to move the account to a new address (needs the password): a link goes to the
        new address, and the account keeps the old one until it is used."""
        if len(body.new_email) > MAX_EMAIL or len(body.password) > MAX_PASSWORD:
            raise Invalid("newEmail", f"must be at most {MAX_EMAIL} characters")
        email = validation.email(body.new_email, "newEmail")
        async with self.db.transaction() as conn:
            row = await self._reauthenticated(conn, principal, body.password)
            if email.lower() == row["email"].lower():
                raise Invalid("newEmail", "is already your address")
            taken = await conn.fetchval(
                "SELECT EXISTS(SELECT 1 FROM users WHERE email = $1)", email
            )
            if taken:
                raise Conflict(
                    "another account uses this address",
                    code="email_taken",
                    details=[{"field": "newEmail", "reason": "already registered"}],
                )
            await self.auth.send_verification(
                conn, row["id"], email, row["first_name"], purpose="change_email"
            )
        return Accepted(
            f"A confirmation link is on its way to {email}; your address changes once it is used."
        )

    # --- the password ------------------------------------------------------------------

    async def _reauthenticated(
        self, conn: Conn, principal: Principal, password: str
    ) -> asyncpg.Record:
        """The caller's account row, locked, once `password` is proved to be theirs."""
        if len(password) > MAX_PASSWORD:
            raise Forbidden("the password is not correct", code="reauthentication_failed")
        row = await users_db.credentials_by_id(conn, principal.user_id)
        if row is None:
            raise NotFound("user not found")
        if not row["password_hash"]:
            raise Forbidden(
                "this account has no password yet: set one with a password reset link",
                code="no_password",
            )
        if not await verify_password(row["password_hash"], password):
            raise Forbidden("the password is not correct", code="reauthentication_failed")
        return row

    async def change_password(self, principal: Principal, body: PasswordChange) -> PasswordChanged:
        if len(body.new_password) > MAX_PASSWORD:
            raise Invalid("newPassword", f"must be at most {MAX_PASSWORD} characters")
        async with self.db.transaction() as conn:
            row = await self._reauthenticated(conn, principal, body.current_password)
            _checked_password(body.new_password, row)
            await users_db.set_password_hash(
                conn, row["id"], await hash_password(body.new_password)
            )
            await tokens_db.retire(conn, row["id"], ("reset_password",))
            ended = await users_db.delete_sessions(conn, row["id"], keep=principal.session_id)
        await self.auth.revoke_all(principal.user_id, ended)
        return PasswordChanged(len(ended))

    async def request_reset(self, body: ResetRequest, client: ClientInfo) -> Accepted:
        """Email a reset link if the address has an active account; the answer is the same
        either way (and so is the work the request does: the email is a queued job)."""
        if len(body.email) > MAX_EMAIL:
            raise Invalid("email", f"must be at most {MAX_EMAIL} characters")
        email = validation.email(body.email)
        await enforce(
            self.limiter,
            self.reset_per_address,
            limit_key("reset", client.ip),
            "too many password reset requests from this address; try again later",
        )
        await enforce(
            self.limiter,
            self.reset_per_email,
            limit_key("reset", email),
            "too many password reset requests for this email; try again later",
        )
        async with self.db.transaction() as conn:
            row = await users_db.get_credentials(conn, email)
            if row is None or row["account_status"] != "active":
                return RESET_SENT
            ttl = self.settings.password_reset_ttl
            token = await links.issue(
                conn, user_id=row["id"], purpose="reset_password", email=row["email"], ttl=ttl
            )
            await links.enqueue_email(
                self.jobs,
                conn,
                to=row["email"],
                first_name=row["first_name"],
                subject="Reset your PeerSpark password",
                message="Someone (we hope you) asked to choose a new password for this account.",
                link=f"{self.settings.base_url}/reset-password?token={token}",
                link_label="Choose a new password",
                note=f"The link works once, for {links.hours(ttl)}. Your password stays as it "
                "is until you use it.",
                user_id=row["id"],
            )
        return RESET_SENT

    async def confirm_reset(self, body: ResetConfirm) -> PasswordChanged:
        """Set a new password with a reset link. Every login session ends (whoever knew the
        old password is signed out), and the address counts as verified: the link reached it."""
        if len(body.new_password) > MAX_PASSWORD:
            raise Invalid("newPassword", f"must be at most {MAX_PASSWORD} characters")
        digest = links.token_digest(_bounded_token(body.token))
        async with self.db.transaction() as conn:
            token = await self._usable(conn, digest, ("reset_password",))
            row = await users_db.credentials_by_id(conn, token["user_id"])
            if row is None:
                raise BadRequest("this link is not valid", code="invalid_token")
            _checked_password(body.new_password, row)
            await users_db.set_password_hash(
                conn, row["id"], await hash_password(body.new_password)
            )
            await conn.execute(
                "UPDATE users SET is_verified = TRUE WHERE id = $1 AND email = $2",
                row["id"],
                token["email"],
            )
            await tokens_db.mark_used(conn, token["id"])
            await tokens_db.retire(conn, row["id"], ("reset_password",))
            ended = await users_db.delete_sessions(conn, row["id"])
        await self.auth.revoke_all(row["id"], ended)
        return PasswordChanged(len(ended))


def _checked_password(password: str, row: asyncpg.Record) -> None:
    try:
        validation.password(
            password,
            email=row["email"],
            username=row["username"],
            names=(row["first_name"], row["last_name"]),
        )
    except Invalid as exc:
        raise Invalid("newPassword", exc.reason) from None


# the application's key for what this module provides (typed app state)
ACCOUNTS = web.AppKey("accounts", AccountService)
