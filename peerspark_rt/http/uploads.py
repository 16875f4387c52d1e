"""/api/upload (multipart, streamed into storage) and /api/files (signed local file links)."""

from __future__ import annotations

import msgspec
from aiohttp import BodyPartReader, hdrs, web

from ..config import SETTINGS
from ..errors import Invalid, NotFound, PayloadTooLarge
from ..infra.storage import content_disposition
from ..resources.uploads import UPLOADS, UploadResult
from .contract import FILE_FORM, Raw, access, operation, signed_in
from .middleware import principal
from .render import Form

routes = web.RouteTableDef()


class SignedLink(msgspec.Struct):
    """The signature of a file link (other parameters are ignored: caches add their own)."""

    expires: str = ""
    signature: str = ""


# Room for multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 16 * 1024


class _Part:
    """A multipart body part as the upload service reads it."""

    def __init__(self, form: Form, part: BodyPartReader) -> None:
        self._form = form
        self._part = part
        self.filename = part.filename
        self.content_type = part.headers.get(hdrs.CONTENT_TYPE)

    async def read_chunk(self, size: int) -> bytes:
        return await self._form.piece(self._part, size)


@routes.post("/api/upload")
@operation(
    tag="files",
    status=201,
    errors=(400, 413, 415, 422, 429),
    raw_body={"multipart/form-data": FILE_FORM},
    access=signed_in(201),
)
async def upload(request: web.Request) -> UploadResult:
    """Upload a file (multipart/form-data, field `file`), streamed into storage."""
    me = principal(request)
    service = request.app[UPLOADS]
    await service.check_rate(me)
    limit = request.app[SETTINGS].upload_max_bytes
    if request.content_length is not None and request.content_length > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"files are limited to {limit} bytes",
            details=[{"field": "file", "reason": f"larger than {limit} bytes"}],
        )
    form = Form.open(request, "file")
    while (part := await form.next_part()) is not None:
        if part.name == "file":
            return await service.upload(me, _Part(form, part))
        await form.skip(part)  # another field: skip it without keeping it
    raise Invalid("file", "is required (a multipart field named 'file')")


@routes.get("/api/files/{key:.+}")
@operation(
    tag="files",
    public=True,
    errors=(403, 404),
    raw={200: Raw("*/*", "the file, as its stored media type")},
    access=access(200),
)
async def serve_file(request: web.Request, query: SignedLink) -> web.StreamResponse:
    """A stored file, through a signed link from the local store."""
    key = request.match_info["key"]
    row, storage = await request.app[UPLOADS].local_file(key, query.expires, query.signature)
    path = storage.path_for(key)
    if not path.is_file():
        raise NotFound("file not found")
    return web.FileResponse(
        path,
        headers={
            hdrs.CONTENT_TYPE: row["content_type"],
            hdrs.CONTENT_DISPOSITION: content_disposition(
                row["original_name"], row["content_type"]
            ),
            "X-Content-Type-Options": "nosniff",
            # user content never runs as part of this origin
            "Content-Security-Policy": "default-src 'none'; sandbox",
            hdrs.CACHE_CONTROL: "private, max-age=300",
        },
    )
