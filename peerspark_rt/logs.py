"""Logging: plain text on a terminal, one JSON object per line elsewhere (containers, systemd,
log shippers) and in production. Every record carries the id of the request it belongs to and,
once known, the user's id; none carries a secret: access and refresh tokens (JWTs), `token=`
query values, bearer credentials and passwords in URLs are replaced before a line is written.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is worth logging.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "user_id",
}

REDACTED = "[redacted]"
_SECRETS = re.compile(
    # a JWT (our access and refresh tokens): three base64url parts, the first a JSON header
    r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    # token=..., access_token=..., refreshToken=... in a query string or a message
    r"|(?<=token=)[^&\s\"']+|(?<=Token=)[^&\s\"']+"
    # Authorization: Bearer <credential>
    r"|(?<=[Bb]earer )[A-Za-z0-9._~+/=-]{8,}"
    # the password of a URL (postgresql://user:password@host, redis://:password@host)
    r"|(?<=://)[^/@\s:]*:[^/@\s]+(?=@)"
)


def redact(text: str) -> str:
    """`text` with every token, bearer credential and URL password replaced."""
    return _SECRETS.sub(_replacement, text)


def _replacement(match: re.Match[str]) -> str:
    found = match.group(0)
    if ":" in found and not found.startswith("eyJ"):  # user:password of a URL
        return found.split(":", 1)[0] + ":" + REDACTED
    return REDACTED


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        record.user_id = user_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, node, request and user ids,
    whatever was passed with `extra=`, and the exception, all redacted."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self.node:
            payload["node"] = self.node
        payload["request_id"] = getattr(record, "request_id", None) or "-"
        uid = getattr(record, "user_id", None)
        if uid:
            payload["user_id"] = uid
        payload.update(
            (k, redact(v) if isinstance(v, str) else v)
            for k, v in record.__dict__.items()
            if k not in _STANDARD
        )
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(payload, default=lambda v: redact(str(v))).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def json_by_default(stream: Any = None) -> bool:
    """JSON lines unless a person is reading: not when the log goes to a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def make_handler(stream: Any, json_lines: bool | None, node: str | None = None) -> logging.Handler:
    """A handler writing to `stream` in this module's formats (`json_lines` None: JSON
    unless `stream` is a terminal)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    if json_lines is None:
        json_lines = json_by_default(stream)
    handler.setFormatter(JsonFormatter(node) if json_lines else TextFormatter())
    return handler


def configure(level: str, json_lines: bool | None, node: str | None = None) -> None:
    """Log to stderr (`json_lines` None: JSON unless stderr is a terminal)."""
    handler = make_handler(sys.stderr, json_lines, node)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log duplicates ours
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
