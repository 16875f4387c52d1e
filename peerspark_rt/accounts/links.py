"""Emails that carry a single-use link (verify an address, reset a password, join a pod...):
the token is random, only its SHA-256 is stored, and the email goes through the job queue
(`send_email`, the `account` template) in the caller's transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import secrets
import uuid
from typing import Any

from ..infra.dbtypes import Executor
from ..infra.jobs import JobQueue
from .db import tokens as tokens_db


def new_token() -> tuple[str, str]:
    """A fresh token and the digest kept of it."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def button_html(url: str, label: str) -> str:
    return (
        f'<p><a href="{html.escape(url, quote=True)}" style="display: inline-block; '
        "background: #3b82f6; color: #ffffff; padding: 10px 16px; border-radius: 6px; "
        f'text-decoration: none;">{html.escape(label)}</a></p>'
    )


async def enqueue_email(
    jobs: JobQueue,
    conn: Executor,
    *,
    to: str,
    first_name: str,
    subject: str,
    message: str,
    link: str | None = None,
    link_label: str = "Open PeerSpark",
    note: str = "",
    user_id: uuid.UUID | None = None,
) -> None:
    context: dict[str, Any] = {
        "first_name": first_name,
        "title": subject,
        "message": message,
        "action_line": f"{link_label}: {link}" if link else "",
        "action_html": button_html(link, link_label) if link else "",
        "note": note,
    }
    payload: dict[str, Any] = {
        "to": to,
        "subject": subject,
        "template": "account",
        "context": context,
    }
    if user_id is not None:
        payload["userId"] = str(user_id)
    await jobs.enqueue(conn, "send_email", payload)


async def issue(
    conn: Executor,
    *,
    user_id: uuid.UUID,
    purpose: str,
    email: str | None,
    ttl: int,
    replace: bool = True,
) -> str:
    """A new token of `purpose` for the user (earlier unused ones of the purpose retired)."""
    if replace:
        await tokens_db.retire(conn, user_id, (purpose,))
    token, digest = new_token()
    await tokens_db.insert(
        conn,
        user_id=user_id,
        purpose=purpose,
        token_hash=digest,
        email=email,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl),
    )
    return token


def hours(seconds: int) -> str:
    """A link's lifetime in words."""
    if seconds % 3600 == 0 and seconds >= 3600:
        n = seconds // 3600
        return f"{n} hour{'s' if n != 1 else ''}"
    n = max(1, seconds // 60)
    return f"{n} minute{'s' if n != 1 else ''}"
