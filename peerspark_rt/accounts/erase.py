"""Deleting an account (after re-authentication) and exporting everything it owns.

Deletion: what is removed and what is kept anonymised is listed in `accounts/db/erase.py`
(and README). Every login session ends with the account and its sockets close at once; the
uploaded files' bytes are deleted from storage once the rows are gone.

Export: GET /api/users/me/export starts a `export_user_data` job (or says how the last one is
doing); the job writes one JSON archive and emails a link that downloads it once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import orjson
from aiohttp import web

from ..errors import Forbidden, NotFound
from ..infra.dbtypes import Conn
from ..infra.jobs import Job, JobQueue, PermanentError
from ..infra.pool import Database
from ..infra.storage import Storage
from . import db as users_db
from . import links
from .auth import MAX_PASSWORD, AuthService, Principal
from .db import erase as erase_db
from .db import tokens as tokens_db
from .passwords import verify_password

log = logging.getLogger(__name__)

# An account without a password re-authenticates by signing in (with its provider) again:
# its login session must be at most this old.
REAUTH_WINDOW = dt.timedelta(minutes=10)
EXPORT_FORMAT = 1


class DeleteAccount(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """The account's password; an account that signs in only with a provider leaves it out
    and must have signed in within the last 10 minutes."""

    password: str | None = None


class ExportStatus(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    status: str  # pending | ready | downloaded | failed
    requested_at: dt.datetime
    ready_at: dt.datetime | None
    expires_at: dt.datetime | None
    size_bytes: int | None
    message: str


_MESSAGES = {
    "pending": "Your archive is being prepared; a download link will be emailed to you.",
    "ready": "Your archive is ready: the download link is in your email (it works once).",
}


# What another domain keeps outside PostgreSQL about a user (a leaderboard in Redis, say):
# called in the deleting transaction, it reads what it needs and returns what to do once the
# account is gone (or None).
AfterErase = Callable[[], Awaitable[None]]
ErasureHook = Callable[[Conn, uuid.UUID], Awaitable[AfterErase | None]]


class AccountEraser:
    def __init__(self, auth: AuthService, jobs: JobQueue, storage: Storage | None) -> None:
        self.auth = auth
        self.db = auth.db
        self.settings = auth.settings
        self.jobs = jobs
        self.storage = storage
        self._hooks: list[ErasureHook] = []

    def on_erase(self, hook: ErasureHook) -> None:
        self._hooks.append(hook)

    async def delete(self, principal: Principal, body: DeleteAccount) -> None:
        if body.password is not None and len(body.password) > MAX_PASSWORD:
            raise Forbidden("the password is not correct", code="reauthentication_failed")
        async with self.db.transaction() as conn:
            row = await users_db.credentials_by_id(conn, principal.user_id)
            if row is None:
                raise NotFound("user not found")
            if row["password_hash"]:
                if not body.password or not await verify_password(
                    row["password_hash"], body.password
                ):
                    raise Forbidden(
                        "confirm with your password to delete the account",
                        code="reauthentication_failed",
                    )
            else:
                fresh = principal.signed_in_at is not None and (
                    dt.datetime.now(dt.UTC) - principal.signed_in_at <= REAUTH_WINDOW
                )
                if not fresh:
                    raise Forbidden(
                        "sign in again (with your provider) within 10 minutes of deleting",
                        code="reauthentication_required",
                    )
            ended = await users_db.delete_sessions(conn, principal.user_id)
            files = await erase_db.upload_keys(conn, principal.user_id)
            passed, deleted = await erase_db.hand_over_pods(conn, principal.user_id)
            await erase_db.keep_answered_comments(conn, principal.user_id)
            await erase_db.release_counts(conn, principal.user_id)
            after = [await hook(conn, principal.user_id) for hook in self._hooks]
            await erase_db.delete_user(conn, principal.user_id)
        await self.auth.revoke_all(principal.user_id, ended)
        for then in after:
            if then is None:
                continue
            try:
                await then()
            except Exception:
                # the account is gone either way (what is left is logged for the operator)
                log.exception("cleaning up after a deleted account failed")
        log.info(
            "account deleted",
            extra={
                "user_id": str(principal.user_id),
                "pods_passed_on": passed,
                "pods_deleted": deleted,
                "files": len(files),
            },
        )
        for file in files:
            if self.storage is None or file["backend"] != self.storage.backend:
                continue
            try:
                await self.storage.delete(file["storage_key"])
            except Exception:
                # the account is gone either way; a file left over is logged for the operator
                log.exception("deleting a deleted account's file failed")

    # --- export --------------------------------------------------------------------------

    async def export_status(self, principal: Principal) -> tuple[ExportStatus, bool]:
        """The export under way or ready to download; else a new one is started
        (second value: True)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 17))",
                str(principal.user_id),
            )
            row = await conn.fetchrow(
                """SELECT id, status, created_at, ready_at, expires_at, size_bytes
                     FROM data_exports
                    WHERE user_id = $1 AND (status = 'pending'
                          OR (status = 'ready' AND expires_at > NOW()))
                    ORDER BY created_at DESC LIMIT 1""",
                principal.user_id,
            )
            started = row is None
            if row is None:
                row = await conn.fetchrow(
                    """INSERT INTO data_exports (user_id) VALUES ($1)
                       RETURNING id, status, created_at, ready_at, expires_at, size_bytes""",
                    principal.user_id,
                )
                if row is None:
                    raise RuntimeError("the statement returned no row")
                await self.jobs.enqueue(conn, "export_user_data", {"exportId": str(row["id"])})
        return (
            ExportStatus(
                id=row["id"],
                status=row["status"],
                requested_at=row["created_at"],
                ready_at=row["ready_at"],
                expires_at=row["expires_at"],
                size_bytes=row["size_bytes"],
                message=_MESSAGES[row["status"]],
            ),
            started,
        )

    async def build_export(self, job: Job) -> None:
        """The `export_user_data` job: the archive, stored with the hash of a fresh download
        token, and the link emailed. Idempotent: an export no longer pending is left alone."""
        try:
            export_id = uuid.UUID(str(job.payload["exportId"]))
        except (KeyError, ValueError):
            raise PermanentError("payload lacks a valid exportId") from None
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                """SELECT e.user_id, e.status, u.email, u.first_name
                     FROM data_exports e JOIN users u ON u.id = e.user_id
                    WHERE e.id = $1 FOR UPDATE OF e""",
                export_id,
            )
            if row is None or row["status"] != "pending":
                return
            sections = await erase_db.export_sections(conn, row["user_id"])
            archive = orjson.dumps(
                {
                    "format": EXPORT_FORMAT,
                    "exportedAt": dt.datetime.now(dt.UTC).isoformat(),
                    "userId": str(row["user_id"]),
                    **sections,
                },
                option=orjson.OPT_INDENT_2,
            )
            token, digest = links.new_token()
            ttl = self.settings.data_export_ttl
            await conn.execute(
                """UPDATE data_exports
                      SET status = 'ready', archive = $2, size_bytes = $3, token_hash = $4,
                          ready_at = NOW(), expires_at = NOW() + make_interval(secs => $5)
                    WHERE id = $1""",
                export_id,
                archive,
                len(archive),
                digest,
                float(ttl),
            )
            await links.enqueue_email(
                self.jobs,
                conn,
                to=row["email"],
                first_name=row["first_name"],
                subject="Your PeerSpark data export is ready",
                message="The archive of everything your account holds is ready (JSON, "
                f"{len(archive):,} bytes).",
                link=f"{self.settings.base_url}/api/exports/{token}",
                link_label="Download my data",
                note=f"The link downloads the archive once, within {links.hours(ttl)}; then "
                "the archive is deleted.",
                user_id=row["user_id"],
            )

    async def download(self, token: str) -> bytes:
        """The archive, once: the row forgets it as it is handed out."""
        if not token or len(token) > 256 or not token.isascii():
            raise NotFound("this download link is not valid, was used, or has expired")
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                """UPDATE data_exports
                      SET status = 'downloaded', downloaded_at = NOW(), archive = NULL
                     FROM (SELECT id, archive FROM data_exports
                            WHERE token_hash = $1 AND status = 'ready' AND expires_at > NOW()
                            FOR UPDATE) old
                    WHERE data_exports.id = old.id
                RETURNING old.archive""",
                links.token_digest(token),
            )
        if row is None or row["archive"] is None:
            raise NotFound("this download link is not valid, was used, or has expired")
        archive: bytes = row["archive"]
        return archive


async def cleanup(db: Database, job: Job) -> None:
    """The hourly `account_cleanup` job: expired links, sign-ins never finished, and archives
    nobody downloaded in time."""
    async with db.transaction() as conn:
        await tokens_db.purge_expired(conn)
        await conn.execute("DELETE FROM oauth_states WHERE expires_at < NOW()")
        await conn.execute(
            """UPDATE data_exports SET archive = NULL, status = 'failed'
                WHERE status = 'ready' AND expires_at < NOW()"""
        )
        await conn.execute("DELETE FROM data_exports WHERE created_at < NOW() - INTERVAL '90 days'")


# the application's key for what this module provides (typed app state)
ERASER = web.AppKey("eraser", AccountEraser)
