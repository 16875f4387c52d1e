"""The OpenAPI document: served at /api/openapi.json, valid OpenAPI 3.1, and complete: every
route of the router is in it (a route added without a contract fails here), with the models
the handlers decode and answer with. /api/docs shows the same document as a page."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator

from peerspark_rt.http.contract import CALLERS, operation, signed_in
from peerspark_rt.http.openapi import build_document, described_routes
from peerspark_rt.pods.service import PodCreate
from tests.helpers import Api


def missing_from(router: web.UrlDispatcher, document: dict[str, Any]) -> list[str]:
    """Routes of `router` that the document does not describe."""
    return [
        f"{route.method} {route.path}"
        for route in described_routes(router)
        if route.method.lower() not in document["paths"].get(route.path, {})
    ]


async def served_document(api: Api) -> dict[str, Any]:
    resp = await api.get("/api/openapi.json")
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = resp.body
    return document


async def test_every_route_of_the_router_is_in_the_served_document(api: Api) -> None:
    document = await served_document(api)
    assert missing_from(api.app.router, document) == []
    operations = sum(len(item) for item in document["paths"].values())
    assert operations == len(described_routes(api.app.router)) >= 90


async def test_the_document_is_valid_openapi_3_1(api: Api) -> None:
    document = await served_document(api)
    assert document["openapi"].startswith("3.1")
    errors = [str(e.message) for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


async def test_a_route_without_a_contract_is_caught() -> None:
    """What the completeness check does with a route nobody described."""
    routes = web.RouteTableDef()

    @routes.post("/api/things")
    @operation(tag="things", status=201, access=signed_in(201))
    async def described(request: web.Request, body: PodCreate) -> PodCreate:
        return body

    @routes.get("/api/things/{thingId}")
    async def undescribed(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_routes(routes)
    document = build_document(app.router, title="t", version="0")
    assert missing_from(app.router, document) == ["GET /api/things/{thingId}"]
    post = document["paths"]["/api/things"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PodCreate"
    }
    assert set(post["responses"]) == {"201", "400", "401", "408", "413", "415", "422"}


async def test_operations_carry_the_models_the_handlers_use(api: Api) -> None:
    document = await served_document(api)
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/pods"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Pod"
    }
    # the request model is msgspec's own schema of the Struct the handler decodes
    (expected,), components = msgspec.json.schema_components(
        [PodCreate], ref_template="#/components/schemas/{name}"
    )
    assert create["requestBody"]["content"]["application/json"]["schema"] == expected
    assert schemas["PodCreate"] == components["PodCreate"]
    # queries become parameters; list fields may repeat
    listing = document["paths"]["/api/resources"]["get"]["parameters"]
    tags = next(p for p in listing if p["name"] == "tags")
    assert tags["in"] == "query"
    assert tags["explode"] is True
    # every error is the one error model, and every operation says who may call it
    for path, item in document["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and not (path == "/health" and status == "503"):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"
                    }, (method, path, status)
            assert set(op["x-access"]) == set(CALLERS), (method, path)
    error = schemas["ErrorBody"]
    assert set(error["required"]) == {"code", "message", "requestId"}


async def test_public_operations_are_marked_and_need_no_token(api: Api) -> None:
    document = await served_document(api)
    public = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if op.get("security") == []
    }
    assert {
        ("POST", "/api/auth/login"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/docs"),
        ("GET", "/api/calendar/feed/{token}.ics"),
    } <= public
    assert ("GET", "/api/pods") not in public
    assert (await api.get("/api/openapi.json")).status == 200  # no token sent


async def test_the_docs_page_shows_every_operation_and_fetches_nothing(api: Api) -> None:
    document = await served_document(api)
    resp = await api.get("/api/docs")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = resp.body.decode()
    for path, item in document["paths"].items():
        for op in item.values():
            assert f'id="{op["operationId"]}"' in page, path
    # self-contained: no scripts, stylesheets, images or fonts from anywhere
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "Pod" in page
    assert "ErrorResponse" in page
