"""Uploads through HTTP: streamed into a local folder (signed, expiring links the app serves)
or S3 (moto's standalone server over HTTP, presigned links); size, type, content and rate
limits; files attached to resources and posts, and deleted with their resource."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from peerspark_rt.infra.jobs import JOBS, WORKER
from peerspark_rt.infra.pool import DB
from peerspark_rt.infra.storage import STORAGE, LocalStorage
from tests.helpers import Api, User, unique
from tests.social import post, resource

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(2000)
PDF_HEAD = b"%PDF-1.7\n"


def form(
    content: bytes, content_type: str, filename: str = "file.bin", field: str = "file"
) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("note", "ignored extra field")
    data.add_field(field, content, filename=filename, content_type=content_type)
    return data


async def upload(api: Api, user: User, content: bytes, content_type: str, **kw: Any) -> Any:
    return await api.post("/api/upload", user, data=form(content, content_type, **kw))


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_local_upload_roundtrip_and_deletion(api: Api, db: asyncpg.Connection) -> None:
    owner, reader = await api.register(), await api.register()
    resp = await upload(api, owner, PNG, "image/png", filename="../../diagram final.png")
    assert resp.status == 201, resp.body
    up = resp.body
    assert (up["size"], up["type"], up["storage"]) == (len(PNG), "image/png", "local")
    assert up["filename"] == "diagram final.png"
    assert up["key"].startswith(f"{owner.id}/")
    assert up["key"].endswith(".png")
    assert ".." not in up["key"]
    fetched = await api.get(path_of(up["url"]))  # no token: the signature is the permission
    assert fetched.status == 200
    assert fetched.body == PNG
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.headers["X-Content-Type-Options"] == "nosniff"
    storage = api.app[STORAGE]
    assert isinstance(storage, LocalStorage)
    on_disk = storage.root / up["key"]
    assert on_disk.read_bytes() == PNG
    made = await resource(
        api, owner, "Diagram", resourceType="document", uploadId=up["id"], isPublic=True
    )
    assert (made["fileSize"], made["fileType"]) == (len(PNG), "image/png")
    assert made["file"]["filename"] == "diagram final.png"
    dl = await api.get(f"/api/resources/{made['id']}/download", reader)
    assert dl.status == 200
    assert dl.body["downloadCount"] == 1
    assert (await api.get(path_of(dl.body["url"]))).body == PNG
    # One file backs one thing.
    again = await api.post(
        "/api/resources",
        owner,
        json={"title": "copy", "resourceType": "note", "uploadId": up["id"]},
    )
    assert again.status == 422
    assert again.error_field() == "uploadId"
    theft = await api.post(
        "/api/resources",
        reader,
        json={"title": "mine", "resourceType": "note", "uploadId": up["id"]},
    )
    assert theft.status == 422
    assert (await api.delete(f"/api/resources/{made['id']}", owner)).status == 204
    assert not on_disk.exists()
    assert await db.fetchval("SELECT count(*) FROM uploads WHERE id = $1", uuid.UUID(up["id"])) == 0
    assert (await api.get(path_of(dl.body["url"]))).status == 404


async def test_signed_links_refuse_tampering_expiry_and_traversal(api: Api) -> None:
    owner = await api.register()
    up = (await upload(api, owner, PNG, "image/png")).body
    key = up["key"]
    storage = api.app[STORAGE]
    assert isinstance(storage, LocalStorage)
    good = urlsplit(up["url"])
    tampered = await api.get(good.path + "?" + good.query[:-2] + "xx")
    assert tampered.status == 403
    assert tampered.body["error"]["code"] == "invalid_signature"
    other_key = await api.get(good.path.replace(key[-8:], "00000000") + "?" + good.query)
    assert other_key.status == 403
    past = int(time.time()) - 5
    expired = await api.get(
        f"/api/files/{key}?expires={past}&signature={storage.signature(key, past)}"
    )
    assert expired.status == 403
    assert expired.body["error"]["code"] == "link_expired"
    assert (await api.get(f"/api/files/{key}")).status == 403
    assert (await api.get(f"/api/files/{key}?expires=soon&signature=x")).status == 403
    future = int(time.time()) + 60
    for evil in ("..%2F..%2Fjwt-secrets.json", f"{owner.id}/..%2F..%2Fjwt-secrets.json"):
        resp = await api.get(f"/api/files/{evil}?expires={future}&signature=abc")
        assert resp.status == 403, evil
    # Even a correctly signed traversal key is refused: keys must look like ours.
    evil_key = "../jwt-secrets.json"
    signature = storage.signature(evil_key, future)
    resp = await api.get(f"/api/files/..%2Fjwt-secrets.json?expires={future}&signature={signature}")
    assert resp.status == 404


async def test_upload_limits(make_client: Any, db: asyncpg.Connection, tmp_path: Path) -> None:
    api = await make_client(upload_max_bytes=4096, upload_rate_limit=100)
    user = await api.register()
    too_big = await upload(api, user, b"a" * 10_000, "text/plain")
    assert too_big.status == 413
    assert too_big.body["error"]["details"][0]["field"] == "file"
    partial = api.app[STORAGE].root / ".partial"
    assert not any(partial.iterdir())  # the half-written file was removed
    exe = await upload(api, user, b"MZ\x90\x00", "application/x-msdownload")
    assert exe.status == 415
    assert exe.body["error"]["details"][0]["field"] == "file"
    html = await upload(api, user, b"<html>", "text/html")
    assert html.status == 415
    not_multipart = await api.post("/api/upload", user, json={"file": "x"})
    assert not_multipart.status == 415
    lying_png = await upload(api, user, b"just some text, honest", "image/png")
    assert lying_png.status == 422
    assert lying_png.error_field() == "file"
    assert lying_png.body["error"]["code"] == "content_type_mismatch"
    lying_text = await upload(api, user, PNG[:1000], "text/plain")
    assert lying_text.status == 422
    assert "image/png" in lying_text.body["error"]["message"]
    lying_pdf = await upload(api, user, b"PK\x03\x04zipzip", "application/pdf")
    assert lying_pdf.status == 422
    empty = await upload(api, user, b"", "text/plain")
    assert empty.status == 422
    assert empty.error_field() == "file"
    missing = await upload(api, user, b"hello", "text/plain", field="attachment")
    assert missing.status == 422
    assert missing.error_field() == "file"
    fine = await upload(
        api, user, "Übung: naïve café ✓\n".encode() * 10, "text/plain; charset=utf-8"
    )
    assert fine.status == 201
    assert fine.body["type"] == "text/plain"
    pdf = await upload(api, user, PDF_HEAD + b"x" * 100, "application/pdf", filename="notes.pdf")
    assert pdf.status == 201
    assert pdf.body["key"].endswith(".pdf")
    stored = await db.fetchval(
        "SELECT count(*) FROM uploads WHERE owner_id = $1", uuid.UUID(user.id)
    )
    assert stored == 2
    assert (await api.post("/api/upload", None, data=form(PNG, "image/png"))).status == 401


async def test_upload_rate_limit(make_client: Any) -> None:
    api = await make_client(upload_rate_limit=3)
    user, other = await api.register(), await api.register()
    for _ in range(3):
        assert (await upload(api, user, PNG, "image/png")).status == 201
    limited = await upload(api, user, PNG, "image/png")
    assert limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600
    assert (await upload(api, other, PNG, "image/png")).status == 201


async def test_post_attachments(api: Api) -> None:
    author, reader, stranger = [await api.register() for _ in range(3)]
    up = (await upload(api, author, PNG, "image/png", filename="chart.png")).body
    made = await post(api, author, "see chart", attachments=[{"uploadId": up["id"]}])
    media = made["attachments"][0]
    assert (media["uploadId"], media["filename"], media["type"]) == (
        up["id"],
        "chart.png",
        "image/png",
    )
    seen = await api.get(f"/api/posts/{made['id']}", reader)
    assert (await api.get(path_of(seen.body["attachments"][0]["url"]))).body == PNG
    mobile = await api.get("/api/mobile/feed?limit=50", reader)
    entry = next(p for p in mobile.body["posts"] if p["id"] == made["id"])
    assert len(entry["media"]) == 1
    assert "/api/files/" in entry["media"][0]
    reuse = await api.post(
        "/api/posts", author, json={"content": "again", "attachments": [{"uploadId": up["id"]}]}
    )
    assert reuse.status == 422
    assert reuse.error_field() == "attachments[0].uploadId"
    theirs = (await upload(api, stranger, PNG, "image/png")).body
    steal = await api.post(
        "/api/posts", author, json={"content": "x", "attachments": [{"uploadId": theirs["id"]}]}
    )
    assert steal.status == 422


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's standalone S3-compatible server on a free local port, spoken to over HTTP."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_settings(moto_url: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
        "s3_endpoint_url": moto_url,
        "aws_s3_bucket": bucket,
        **extra,
    }


async def s3_object(moto_url: str, bucket: str, key: str) -> bytes | None:
    session = get_session()
    async with session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        try:
            got = await client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        async with got["Body"] as stream:
            data: bytes = await stream.read()
            return data


async def test_s3_backend_streams_presigns_and_deletes(make_client: Any, moto_url: str) -> None:
    bucket = unique("peerspark-test-").lower()
    api = await make_client(**s3_settings(moto_url, bucket))
    health = await api.health()
    assert health.body["services"]["storage"] == {
        **health.body["services"]["storage"],
        "status": "healthy",
        "mode": "s3",
        "bucket": bucket,
    }
    owner, reader = await api.register(), await api.register()
    # 9 MiB: more than one multipart part (8 MiB), so the multipart path runs.
    big = PDF_HEAD + os.urandom(9 * 1024 * 1024)
    resp = await upload(api, owner, big, "application/pdf", filename="lecture.pdf")
    assert resp.status == 201, resp.body
    up = resp.body
    assert up["storage"] == "s3"
    assert up["size"] == len(big)
    stored = await s3_object(moto_url, bucket, up["key"])
    assert stored is not None
    assert hashlib.sha256(stored).digest() == hashlib.sha256(big).digest()
    small = await upload(api, owner, PNG, "image/png")
    assert await s3_object(moto_url, bucket, small.body["key"]) == PNG
    made = await resource(
        api, owner, "Lecture", resourceType="document", uploadId=up["id"], isPublic=True
    )
    dl = await api.get(f"/api/resources/{made['id']}/download", reader)
    assert dl.status == 200
    assert dl.body["url"].startswith(f"{moto_url}/{bucket}/{up['key']}?")
    assert "Signature=" in dl.body["url"] or "X-Amz-Signature=" in dl.body["url"]
    async with aiohttp.ClientSession() as http, http.get(dl.body["url"]) as got:
        assert got.status == 200
        assert hashlib.sha256(await got.read()).digest() == hashlib.sha256(big).digest()
    assert (await api.delete(f"/api/resources/{made['id']}", owner)).status == 204
    assert await s3_object(moto_url, bucket, up["key"]) is None
    assert await s3_object(moto_url, bucket, small.body["key"]) == PNG  # unrelated file stays


async def test_s3_upload_over_the_limit_leaves_nothing(make_client: Any, moto_url: str) -> None:
    bucket = unique("peerspark-limit-").lower()
    api = await make_client(**s3_settings(moto_url, bucket, upload_max_bytes=10 * 1024 * 1024))
    owner = await api.register()
    resp = await upload(api, owner, PDF_HEAD + b"\x00" * (12 * 1024 * 1024), "application/pdf")
    assert resp.status == 413
    session = get_session()
    async with session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        listed = await client.list_objects_v2(Bucket=bucket)
        assert listed.get("KeyCount", 0) == 0
        pending = await client.list_multipart_uploads(Bucket=bucket)
        assert not pending.get("Uploads")


async def test_the_cleanup_job_deletes_unused_files(
    make_client: Any, db: asyncpg.Connection
) -> None:
    """Uploads never attached within a day, and files of posts deleted (or gone with their
    pod) more than 30 days ago, go with their bytes; everything still in use stays."""
    api: Api = await make_client(run_worker=True, worker_poll_interval=0.1)
    owner = await api.register()
    storage = api.app[STORAGE]
    assert isinstance(storage, LocalStorage)

    async def new_upload() -> dict[str, Any]:
        resp = await upload(api, owner, PNG, "image/png")
        assert resp.status == 201, resp.body
        body: dict[str, Any] = resp.body
        return body

    async def attached_post(**fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        up = await new_upload()
        made = await post(
            api, owner, unique("with a file "), attachments=[{"uploadId": up["id"]}], **fields
        )
        return up, made

    stale, fresh = await new_upload(), await new_upload()
    await db.execute(
        "UPDATE uploads SET created_at = NOW() - INTERVAL '25 hours' WHERE id = $1",
        uuid.UUID(stale["id"]),
    )
    long_deleted, deleted_post = await attached_post()
    recently_deleted, recent_post = await attached_post()
    live, live_post = await attached_post()
    pod = await api.create_pod(owner)
    with_pod, _ = await attached_post(podId=pod["id"])
    for made in (deleted_post, recent_post):
        assert (await api.delete(f"/api/posts/{made['id']}", owner)).status == 204
    assert (await api.delete(f"/api/pods/{pod['id']}", owner)).status == 204
    await db.execute(
        "UPDATE uploads SET released_at = NOW() - INTERVAL '31 days' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(long_deleted["id"]), uuid.UUID(with_pod["id"])],
    )

    await api.app[JOBS].enqueue(api.app[DB].pool, "cleanup")
    await api.app[WORKER].drain()

    gone = {stale["id"], long_deleted["id"], with_pod["id"]}
    kept = {fresh["id"], recently_deleted["id"], live["id"]}
    rows = await db.fetch(
        "SELECT id FROM uploads WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in gone | kept]
    )
    assert {str(r["id"]) for r in rows} == kept
    for up in (stale, fresh, long_deleted, recently_deleted, live, with_pod):
        assert storage.path_for(up["key"]).exists() == (up["id"] in kept), up
    shown = await api.get(f"/api/posts/{live_post['id']}", owner)
    fetched = await api.get(path_of(shown.body["attachments"][0]["url"]))
    assert fetched.status == 200
    assert fetched.body == PNG
