"""Uploads: stream a file into storage, checking size, type and content on the way.

The file is never held whole: chunks go from the request straight to the storage writer. The
declared type must be one the product accepts (415 otherwise) and the first bytes must look like
it (422); more than UPLOAD_MAX_BYTES is a 413 the moment the limit is passed. Each user may
upload UPLOAD_RATE_LIMIT files an hour (the spec: 10).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..accounts.ratelimit import Limit, RateLimiter, enforce
from ..errors import Invalid, NotFound, PayloadTooLarge, UnsupportedMediaType
from ..infra.pool import Database
from ..infra.storage import LocalStorage, SignedUrl, Storage, Writer, new_key
from . import sniff
from .db import uploads as uploads_db

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# An upload not attached to anything within a day was abandoned (a cancelled post).
UNATTACHED_FOR = dt.timedelta(hours=24)
# A deleted post's files stay a while, so an operator can still restore a mistaken deletion.
RELEASED_FOR = dt.timedelta(days=30)
PURGE_BATCH = 500


class FilePart(Protocol):
    """What the HTTP layer hands over: one file of a multipart body, read in chunks."""

    filename: str | None
    content_type: str | None

    async def read_chunk(self, size: int) -> bytes: ...


class UploadResult(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    url: str
    filename: str
    size: int
    type: str
    key: str
    storage: str
    expires_at: dt.datetime
    created_at: dt.datetime


class FileLink(msgspec.Struct, rename="camel"):
    url: str
    expires_at: dt.datetime
    filename: str
    size: int
    type: str


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def safe_filename(name: str | None) -> str:
    """A display name only (keys never come from it): no path, no control characters."""
    if not name:
        return "upload"
    # Some clients (aiohttp among them) percent-encode the name in Content-Disposition.
    name = unquote(name) if "%" in name else name
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:200] or "upload"


def expires(url: SignedUrl) -> dt.datetime:
    return dt.datetime.fromtimestamp(url.expires_at, dt.UTC)


class UploadService:
    def __init__(
        self, db: Database, storage: Storage, limiter: RateLimiter, max_bytes: int, per_hour: int
    ) -> None:
        self.db = db
        self.storage = storage
        self.limiter = limiter
        self.max_bytes = max_bytes
        self.limit = Limit("upload", per_hour, 3600)

    async def check_rate(self, principal: Principal) -> None:
        await enforce(
            self.limiter,
            self.limit,
            str(principal.user_id),
            f"at most {self.limit.limit} uploads per hour",
        )

    async def upload(self, principal: Principal, part: FilePart) -> UploadResult:
        """Store one file; the caller has already counted it against the rate limit."""
        declared = sniff.normalize(part.content_type)
        if declared not in sniff.EXTENSIONS:
            raise UnsupportedMediaType(
                f"files of type {declared or 'unknown'!r} are not accepted; accepted types: "
                + ", ".join(sorted(sniff.EXTENSIONS)),
                details=[{"field": "file", "reason": "type is not accepted"}],
            )
        head = bytearray()
        while len(head) < sniff.SNIFF_BYTES:
            chunk = await part.read_chunk(CHUNK)
            if not chunk:
                break
            head += chunk
        if not head:
            raise Invalid("file", "is empty")
        if not sniff.matches(declared, bytes(head[: sniff.SNIFF_BYTES])):
            raise Invalid(
                "file",
                f"content looks like {sniff.describe(bytes(head[: sniff.SNIFF_BYTES]))}, "
                f"not the declared {declared}",
                code="content_type_mismatch",
            )
        key = new_key(principal.user_id, sniff.EXTENSIONS[declared])
        writer = self.storage.writer(key, declared)
        size = await self._stream(writer, bytes(head), part)
        filename = safe_filename(part.filename)
        try:
            row = await uploads_db.insert(
                self.db.pool,
                owner_id=principal.user_id,
                storage_key=key,
                backend=self.storage.backend,
                original_name=filename,
                content_type=declared,
                size_bytes=size,
            )
        except BaseException:
            await self.storage.delete(key)
            raise
        link = await self.storage.url(key, filename=filename, content_type=declared)
        return UploadResult(
            id=row["id"],
            url=link.url,
            filename=filename,
            size=size,
            type=declared,
            key=key,
            storage=self.storage.backend,
            expires_at=expires(link),
            created_at=row["created_at"],
        )

    async def _stream(self, writer: Writer, head: bytes, part: FilePart) -> int:
        size = 0
        try:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(
                        f"files are limited to {self.max_bytes} bytes",
                        details=[
                            {"field": "file", "reason": f"larger than {self.max_bytes} bytes"}
                        ],
                    )
                await writer.write(chunk)
                chunk = await part.read_chunk(CHUNK)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        return size

    async def _link(
        self, *, key: str, backend: str, filename: str, content_type: str, size: int
    ) -> FileLink | None:
        if backend != self.storage.backend:
            return None
        signed = await self.storage.url(key, filename=filename, content_type=content_type)
        return FileLink(
            url=signed.url,
            expires_at=expires(signed),
            filename=filename,
            size=size,
            type=content_type,
        )

    async def link_for_row(
        self, row: asyncpg.Record | Mapping[str, Any], prefix: str = "upload_"
    ) -> FileLink | None:
        """A fresh link to the upload a row was joined with (its columns `<prefix>key`,
        `backend`, `name`, `type` and `size`); None without one or when it sits in another
        backend than this node's."""
        if row[f"{prefix}key"] is None:
            return None
        return await self._link(
            key=row[f"{prefix}key"],
            backend=row[f"{prefix}backend"],
            filename=row[f"{prefix}name"],
            content_type=row[f"{prefix}type"],
            size=row[f"{prefix}size"],
        )

    @staticmethod
    def attachment(row: asyncpg.Record) -> dict[str, Any]:
        """How a post keeps an attached upload (an entry of its `attachments` JSON)."""
        return {
            "uploadId": str(row["id"]),
            "key": row["storage_key"],
            "backend": row["backend"],
            "filename": row["original_name"],
            "size": row["size_bytes"],
            "type": row["content_type"],
        }

    async def link_for_attachment(self, item: Mapping[str, Any]) -> FileLink | None:
        """A fresh link to a post's attachment (an entry made by `attachment`)."""
        return await self._link(
            key=item["key"],
            backend=item["backend"],
            filename=item["filename"],
            content_type=item["type"],
            size=item["size"],
        )

    async def discard(self, row: asyncpg.Record) -> None:
        """Delete a file's bytes (after the row pointing at them is gone)."""
        if row["backend"] != self.storage.backend:
            log.warning("cannot delete %s: stored in %s", row["storage_key"], row["backend"])
            return
        try:
            await self.storage.delete(row["storage_key"])
        except Exception:
            log.exception("could not delete stored file %s", row["storage_key"])

    async def purge_unused(
        self,
        *,
        unattached_for: dt.timedelta = UNATTACHED_FOR,
        released_for: dt.timedelta = RELEASED_FOR,
    ) -> int:
        """Delete uploads nobody uses, rows first and then their bytes: those never attached
        within `unattached_for`, and those of posts deleted more than `released_for` ago.
        Returns how many went. (Run by the hourly `cleanup` job.)"""
        purged = 0
        while True:
            async with self.db.transaction() as conn:
                rows = await uploads_db.delete_unused(
                    conn,
                    unattached_for=unattached_for,
                    released_for=released_for,
                    limit=PURGE_BATCH,
                )
            for row in rows:
                await self.discard(row)
            purged += len(rows)
            # Each kind yields at most a batch: a shorter answer means both ran dry.
            if len(rows) < PURGE_BATCH:
                return purged

    async def local_file(
        self, key: str, expires_at: str, signature: str
    ) -> tuple[asyncpg.Record, LocalStorage]:
        """Check a signed local link; the upload row and the storage to read it from."""
        storage = self.storage
        if not isinstance(storage, LocalStorage):
            raise NotFound("file not found")
        storage.verify(key, expires_at, signature)
        row = await uploads_db.by_key(self.db.pool, key)
        if row is None or row["backend"] != "local":
            raise NotFound("file not found")
        return row, storage


# the application's key for what this module provides (typed app state)
UPLOADS = web.AppKey("uploads", UploadService)
