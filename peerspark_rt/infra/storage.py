"""Where uploaded bytes live: a local folder (the embedded default) or S3.

Both stream: a writer takes chunks as they arrive and never holds a whole file (the local one
appends to a partial file; the S3 one sends multipart parts of PART_SIZE). Both hand out
expiring links: the local backend signs `/api/files/<key>` with an HMAC the app checks; S3
presigns a GET.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from aiohttp import web

from ..config import Settings
from ..errors import Forbidden, NotFound

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)

# Keys are made by the server: "<owner uuid>/<32 hex><.ext>". Anything else is refused.
KEY_PATTERN = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9a-f]{32}(\.[a-z0-9]{1,8})?$"
)
PART_SIZE = 8 * 1024 * 1024  # S3 multipart parts must be at least 5 MiB (except the last)


def new_key(owner_id: uuid.UUID, extension: str) -> str:
    return f"{owner_id}/{secrets.token_hex(16)}{extension}"


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: int  # unix seconds


class Writer(Protocol):
    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...


class Storage(Protocol):
    backend: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def writer(self, key: str, content_type: str) -> Writer: ...

    async def url(self, key: str, *, filename: str, content_type: str) -> SignedUrl: ...

    async def delete(self, key: str) -> None: ...

    async def probe(self) -> dict[str, Any]: ...


def content_disposition(filename: str, content_type: str) -> str:
    """inline for media the browser can show, attachment otherwise; the name made header-safe."""
    kind = (
        "inline"
        if content_type.startswith(("image/", "audio/", "video/"))
        or content_type == "application/pdf"
        else "attachment"
    )
    ascii_name = filename.encode("ascii", "ignore").decode() or "download"
    ascii_name = ascii_name.replace('"', "").replace("\\", "")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


# --------------------------------------------------------------------------- local folder


class _LocalWriter:
    def __init__(self, final: Path, partial_dir: Path) -> None:
        self._final = final
        partial_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=partial_dir, prefix="up-")
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._file.write, chunk)

    async def commit(self) -> None:
        def finish() -> None:
            self._file.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path, self._final)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        def drop() -> None:
            self._file.close()
            self._path.unlink(missing_ok=True)

        await asyncio.to_thread(drop)


class LocalStorage:
    """Files under `<data dir>/uploads`, served by the app through signed, expiring links."""

    backend = "local"

    def __init__(self, root: Path, secret: str, base_url: str, ttl: int) -> None:
        self.root = root.resolve()
        self._key = hmac.new(secret.encode(), b"peerspark file links", hashlib.sha256).digest()
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def path_for(self, key: str) -> Path:
        """The file for `key`; refuses anything that is not a server-made key or that would
        resolve outside the uploads folder."""
        if not KEY_PATTERN.match(key):
            raise NotFound("file not found")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("file not found")
        return path

    def writer(self, key: str, content_type: str) -> Writer:
        return _LocalWriter(self.path_for(key), self.root / ".partial")

    def signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def verify(self, key: str, expires: str, signature: str) -> None:
        """Raise Forbidden unless the link was signed here and has not expired."""
        try:
            when = int(expires)
        except ValueError:
            raise Forbidden("this file link is not valid", code="invalid_signature") from None
        expected = self.signature(key, when)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("this file link is not valid", code="invalid_signature")
        if when < time.time():
            raise Forbidden("this file link has expired", code="link_expired")

    async def url(self, key: str, *, filename: str, content_type: str) -> SignedUrl:
        expires = int(time.time()) + self._ttl
        query = f"expires={expires}&signature={self.signature(key, expires)}"
        return SignedUrl(f"{self._base_url}/api/files/{key}?{query}", expires)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def probe(self) -> dict[str, Any]:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass

        await asyncio.to_thread(check)
        return {"status": "healthy", "mode": "local", "path": str(self.root)}


# --------------------------------------------------------------------------- S3


class _S3Writer:
    """Buffers at most one part; small files become one PutObject, large ones a multipart
    upload."""

    def __init__(self, client: S3Client, bucket: str, key: str, content_type: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        sent = await self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            await self._send_part(part)

    async def commit(self) -> None:
        if self._upload_id is None:
            await self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._type
            )
        else:
            if self._buffer:
                await self._send_part(bytes(self._buffer))
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
        self._buffer.clear()

    async def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


class S3Storage:
    """Files in an S3 bucket (or any S3-compatible server at S3_ENDPOINT_URL)."""

    backend = "s3"

    def __init__(self, settings: Settings, ttl: int) -> None:
        self._settings = settings
        self.bucket = settings.aws_s3_bucket
        self._ttl = ttl
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Storage.start() was not called")
        return self._client

    async def start(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        s = self._settings
        config = AioConfig(
            s3={"addressing_style": "path"} if s.s3_endpoint_url else {},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                region_name=s.aws_region,
                endpoint_url=s.s3_endpoint_url,
                aws_access_key_id=s.aws_access_key_id,
                aws_secret_access_key=s.aws_secret_access_key,
                config=config,
            )
        )
        await self._ensure_bucket()

    async def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            # Convenient with MinIO or moto in development; on AWS the bucket normally exists.
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self._settings.aws_region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {
                    "LocationConstraint": self._settings.aws_region
                }
            await self.client.create_bucket(**kwargs)
            log.info("created S3 bucket %s", self.bucket)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def writer(self, key: str, content_type: str) -> Writer:
        if not KEY_PATTERN.match(key):
            raise NotFound("file not found")
        return _S3Writer(self.client, self.bucket, key, content_type)

    async def url(self, key: str, *, filename: str, content_type: str) -> SignedUrl:
        url = await self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition(filename, content_type),
            },
            ExpiresIn=self._ttl,
        )
        return SignedUrl(url, int(time.time()) + self._ttl)

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=key)

    async def probe(self) -> dict[str, Any]:
        await self.client.head_bucket(Bucket=self.bucket)
        return {"status": "healthy", "mode": "s3", "bucket": self.bucket}


def make_storage(settings: Settings) -> Storage:
    if settings.aws_access_key_id:
        return S3Storage(settings, settings.file_url_ttl)
    return LocalStorage(
        settings.data_dir / "uploads", settings.jwt_secret, settings.base_url, settings.file_url_ttl
    )


# the application's key for what this module provides (typed app state)
STORAGE = web.AppKey("storage", Storage)
