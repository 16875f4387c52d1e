"""Outgoing email: text + HTML bodies from templates, sent through SMTP or, with no SMTP_HOST,
written to a local outbox folder as .eml files a developer can open in any mail program.

Emails are sent by the `send_email` job, never inline in a request: the job is enqueued in the
same transaction as the notification that causes it, and retried with backoff if the SMTP
server is down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import secrets
import string
import unicodedata
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosmtplib
from aiohttp import web

from ..config import Settings
from ..infra.jobs import Job, PermanentError
from ..infra.pool import Database
from . import db as notifications_db

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
TEMPLATE_NAMES = ("notification", "reminder", "digest", "account")
MAX_SUBJECT = 200  # characters; longer subjects are cut with an ellipsis


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


@lru_cache(maxsize=16)
def _template(name: str, ext: str) -> string.Template:
    return string.Template((TEMPLATES / f"{name}.{ext}").read_text(encoding="utf-8"))


def render(name: str, to: str, subject: str, context: dict[str, Any]) -> Email:
    """Fill template `name` (.txt and .html). Values are escaped for the HTML body; keys ending
    in `_html` are trusted fragments built by `fragments` below."""
    if name not in TEMPLATE_NAMES:
        raise PermanentError(f"unknown email template {name!r}")
    plain = {k: "" if v is None else str(v) for k, v in context.items()}
    escaped = {
        k: (v if k.endswith("_html") else html.escape(v, quote=True)) for k, v in plain.items()
    }
    text = _template(name, "txt").safe_substitute(plain)
    body = _template(name, "html").safe_substitute(escaped)
    return Email(to=to, subject=subject, text=_tidy(text), html=body)


def _tidy(text: str) -> str:
    """Drop the blank lines left by empty optional lines, keeping paragraph breaks single."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line.rstrip())
    return "\n".join(out).strip() + "\n"


def header_text(value: str, limit: int = MAX_SUBJECT) -> str:
    """User text made fit for a header such as Subject: line breaks (of any kind), tabs and
    other control characters become spaces, runs of spaces one, and it is cut to `limit`.
    (A title with a newline would otherwise make the email impossible to build.)"""
    spaced = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in value)
    collapsed = " ".join(spaced.split())
    if len(collapsed) > limit:
        collapsed = collapsed[: limit - 1].rstrip() + "\u2026"
    return collapsed


def link_html(url: str | None, label: str) -> str:
    if not url:
        return ""
    return (
        f'<p><a href="{html.escape(url, quote=True)}" style="color: #3b82f6;">'
        f"{html.escape(label)}</a></p>"
    )


def absolute(base_url: str, path: str | None) -> str | None:
    if not path:
        return None
    if path.startswith(("http://", "https://")):
        return path
    return f"{base_url}/{path.lstrip('/')}"


class Mailer:
    """Sends an `Email` by SMTP, or writes it to the outbox folder without SMTP settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = settings.email_outbox_dir or (settings.data_dir / "outbox")

    @property
    def mode(self) -> str:
        return "smtp" if self.settings.smtp_host else "outbox"

    def message(self, mail: Email) -> EmailMessage:
        """The MIME message. The subject is user text and is tidied (`header_text`); anything
        else that cannot go in an email (an address with a line break, say) is a
        PermanentError: retrying cannot fix it, so the job fails at once, with the reason."""
        try:
            msg = EmailMessage()
            msg["From"] = self.settings.email_from
            msg["To"] = mail.to
            msg["Subject"] = header_text(mail.subject)
            msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
            msg["Message-ID"] = make_msgid(domain="peerspark.local")
            msg.set_content(mail.text)
            msg.add_alternative(mail.html, subtype="html")
        except ValueError as exc:  # UnicodeError is one too
            raise PermanentError(f"cannot build the email to {mail.to!r}: {exc}") from None
        return msg

    async def send(self, mail: Email) -> str:
        """Deliver; returns where it went ('smtp' or the outbox file's path)."""
        msg = self.message(mail)
        s = self.settings
        if s.smtp_host:
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_pass,
                use_tls=s.smtp_port == 465,
                # None: upgrade with STARTTLS when the server offers it (port 587)
                start_tls=None if s.smtp_port != 465 else False,
                timeout=30,
            )
            return "smtp"
        return str(await asyncio.to_thread(self._write_outbox, msg))

    def _write_outbox(self, msg: EmailMessage) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.outbox / f"{stamp}-{secrets.token_hex(3)}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msg.as_bytes())
        tmp.replace(path)  # whole files only: a reader never sees half an email
        return path


class EmailJobs:
    """The `send_email` job. Payload: to, subject, template, context, and optionally
    notificationId (marked is_email_sent once sent; a retry after that sends nothing) and
    skipIfRead (an email held back by quiet hours is dropped if the user has read the
    notification in the app meanwhile)."""

    def __init__(self, db: Database, mailer: Mailer, settings: Settings) -> None:
        self.db = db
        self.mailer = mailer
        self.settings = settings

    async def send_email(self, job: Job) -> None:
        p = job.payload
        try:
            to, subject, template = str(p["to"]), str(p["subject"]), str(p["template"])
            context = dict(p.get("context") or {})
        except KeyError as exc:
            raise PermanentError(f"payload lacks {exc}") from None
        notification_id = p.get("notificationId")
        if notification_id:
            row = await notifications_db.email_state(self.db.pool, uuid.UUID(notification_id))
            if row is None:
                log.info("email for deleted notification %s not sent", notification_id)
                return
            if row["is_email_sent"]:
                return
            if p.get("skipIfRead") and row["is_read"]:
                log.info("email for notification %s skipped: read in the app", notification_id)
                return
        base = self.settings.base_url
        context.setdefault("settings_url", f"{base}/settings/notifications")
        context.setdefault("calendar_url", f"{base}/calendar")
        context.setdefault("inbox_url", f"{base}/notifications")
        mail = render(template, to, subject, context)
        where = await self.mailer.send(mail)
        if notification_id:
            await notifications_db.mark_email_sent(self.db.pool, uuid.UUID(notification_id))
        log.info("email sent", extra={"to": to, "template": template, "via": where})


# the application's key for what this module provides (typed app state)
MAILER = web.AppKey("mailer", Mailer)
