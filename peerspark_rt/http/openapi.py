"""The OpenAPI 3.1 document, generated from the contracts the handlers declare (`contract.py`)
and the msgspec models they decode and answer with. Nothing here lists routes or fields."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from .contract import (
    AUTH_ERRORS,
    BODY_ERRORS,
    CALLERS,
    PATH_ERRORS,
    QUERY_ERRORS,
    ErrorResponse,
    Operation,
    operation_of,
)
from .docs_page import render_page

TITLE = "PeerSpark RT API"
REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"\{([^}:]+)\}")


class Described(msgspec.Struct, frozen=True):
    """One route of the router and the contract its handler declares (None: undeclared)."""

    method: str
    path: str
    name: str
    operation: Operation | None


def described_routes(router: web.UrlDispatcher) -> list[Described]:
    """Every route a client can call, with its contract. HEAD routes that aiohttp adds for
    each GET are the GET's and are left out."""
    found = []
    for route in router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        handler = route.handler
        name = f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}"
        found.append(Described(route.method, route.resource.canonical, name, operation_of(handler)))
    return found


def build_document(router: web.UrlDispatcher, *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route of `router`."""
    routes = [r for r in described_routes(router) if r.operation is not None]
    models: list[Any] = [ErrorResponse]
    for route in routes:
        if route.operation is None:
            raise RuntimeError("route.operation is missing")
        op = route.operation
        models.extend(t for t in (op.body, op.response, op.query) if t is not None)
    unique = list(dict.fromkeys(models))
    refs, components = msgspec.json.schema_components(unique, ref_template=REF)
    schema_of = dict(zip(unique, refs, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.operation is None:
            raise RuntimeError("route.operation is missing")
        item = _operation(route, route.operation, schema_of, components)
        paths.setdefault(route.path, {})[route.method.lower()] = item

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "The REST surface of PeerSpark RT. Every error has one shape "
                "(`ErrorResponse`); `x-access` on each operation gives the status each kind of "
                "caller gets (see the docs page). The live socket is described in PROTOCOL.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }
    _drop_unreferenced(document)
    return document


def _operation(
    route: Described,
    op: Operation,
    schema_of: dict[Any, dict[str, Any]],
    components: dict[str, Any],
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": route.name.replace(".", "_"),
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        item["description"] = op.description
    if op.public:
        item["security"] = []
    parameters = _path_parameters(route.path)
    if op.query is not None:
        parameters.extend(_query_parameters(op, schema_of[op.query], components))
    if parameters:
        item["parameters"] = parameters
    if op.body is not None:
        item["requestBody"] = {
            "required": not op.empty_body,
            "content": {"application/json": {"schema": schema_of[op.body]}},
        }
    elif op.raw_body:
        item["requestBody"] = {
            "required": True,
            "content": {media: {"schema": dict(schema)} for media, schema in op.raw_body.items()},
        }
    item["responses"] = _responses(route, op, schema_of)
    item["x-access"] = {caller: op.access.status_for(caller) for caller in CALLERS}
    return item


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """Path parameters. Ids are UUIDs (anything else names nothing: 404); others are text."""
    params = []
    for name in _PATH_PARAM.findall(path):
        is_id = name == "id" or name.endswith("Id")
        schema = {"type": "string", "format": "uuid"} if is_id else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _query_parameters(
    op: Operation, ref: dict[str, Any], components: dict[str, Any]
) -> list[dict[str, Any]]:
    """A query model's fields as query parameters (list fields may repeat)."""
    model = components[ref["$ref"].rsplit("/", 1)[-1]]
    required = set(model.get("required", ()))
    params = []
    for name, schema in model.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _without_null(schema),
        }
        if name in op.query_lists:
            param["style"] = "form"
            param["explode"] = True
        params.append(param)
    return params


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema. A query string cannot carry null: an optional text is
    absent or text (`null` is the word "null"), while an optional number or flag also
    takes the word `null` as "not given" (msgspec's reading of query strings)."""
    schema = copy.deepcopy(schema)
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [s for s in options if s != {"type": "null"}]
    if len(kept) == len(options) or any(s.get("type") != "string" for s in kept):
        return schema
    if schema.get("default", 0) is None:
        del schema["default"]
    if len(kept) == 1:
        del schema["anyOf"]
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept
    return schema


def _responses(
    route: Described, op: Operation, schema_of: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in op.success:
        content: dict[str, Any] = {}
        if op.response is not None and status != 204:
            content["application/json"] = {"schema": schema_of[op.response]}
        responses[str(status)] = {"description": _phrase(status)}
        if content:
            responses[str(status)]["content"] = content
    for status, raw in op.raw.items():
        entry = responses.get(str(status))
        if entry is None or "content" not in entry:
            entry = responses[str(status)] = {"description": raw.description}
        else:
            entry["description"] += f"; or {raw.description}"
        media: dict[str, Any] = {"schema": dict(raw.schema)} if raw.schema else {}
        entry.setdefault("content", {})[raw.media_type] = media
    error = {"application/json": {"schema": schema_of[ErrorResponse]}}
    for status in sorted(set(_error_statuses(route, op)) - set(op.success)):
        responses[str(status)] = {"description": _phrase(status), "content": error}
    return dict(sorted(responses.items()))


def _error_statuses(route: Described, op: Operation) -> Iterable[int]:
    yield from op.errors
    if not op.public and route.path.startswith("/api/"):
        yield from AUTH_ERRORS
    if _PATH_PARAM.search(route.path):
        yield from PATH_ERRORS
    if op.body is not None:
        yield from BODY_ERRORS
    if op.query is not None:
        yield from QUERY_ERRORS


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _drop_unreferenced(document: dict[str, Any]) -> None:
    """Query models become parameters; their own component entries are left out unless some
    other schema refers to them."""
    schemas = document["components"]["schemas"]
    while True:
        text = msgspec.json.encode({k: v for k, v in document.items()}).decode()
        unused = [name for name in schemas if f'"{REF.format(name=name)}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


class ApiDocument:
    """An application's OpenAPI document and docs page, built on first use."""

    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None
        self._json: bytes | None = None
        self._html: bytes | None = None

    def document(self, router: web.UrlDispatcher) -> dict[str, Any]:
        if self._document is None:
            self._document = build_document(router, title=TITLE, version=__version__)
        return self._document

    def json(self, router: web.UrlDispatcher) -> bytes:
        if self._json is None:
            self._json = msgspec.json.encode(self.document(router))
        return self._json

    def html(self, router: web.UrlDispatcher) -> bytes:
        if self._html is None:
            self._html = render_page(self.document(router)).encode()
        return self._html


# Here rather than in keys.py: the document is built from handlers that import keys.py.
API_DOCUMENT = web.AppKey("api_document", ApiDocument)
