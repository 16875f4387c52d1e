"""/api/upload (multipart, streamed into storage) and /api/files (signed local file links)."""

from __future__ import annotations

from aiohttp import BodyPartReader, hdrs, web

from ..errors import Invalid, NotFound, PayloadTooLarge
from ..services.storage import content_disposition
from .keys import SETTINGS, UPLOADS
from .middleware import principal, public
from .render import Form, json_response

routes = web.RouteTableDef()

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
async def upload(request: web.Request) -> web.Response:
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
            result = await service.upload(me, _Part(form, part))
            return json_response(result, status=201)
        await form.skip(part)  # another field: skip it without keeping it
    raise Invalid("file", "is required (a multipart field named 'file')")


@routes.get("/api/files/{key:.+}")
@public
async def serve_file(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    row, storage = await request.app[UPLOADS].local_file(
        key, request.query.get("expires", ""), request.query.get("signature", "")
    )
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
