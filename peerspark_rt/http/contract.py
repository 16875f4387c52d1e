"""The HTTP contract: what each operation reads, answers and allows, declared once.

A handler states its request and response types in its signature (`body: PodCreate`,
`query: PodQuery`, `-> Pod`), and `@operation(...)` beside it states the rest: the success
status, the errors it can answer with, and who may call it (`Access`). The same declaration
parses the request before the handler runs, renders what it returns, builds the OpenAPI
document (`http/openapi.py`) and drives the authorization matrix test. There is no second
list of routes or models to keep in step.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_args, get_origin

import msgspec
from aiohttp import web

from ..infra.readcache import Encoded
from .render import json_response, no_content, read_body, read_query

T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The kinds of caller the authorization matrix tries every operation with.
CALLERS = ("anonymous", "outsider", "member", "banned", "moderator", "owner", "admin")


@dataclass(frozen=True, slots=True)
class Access:
    """The status each kind of caller gets from an operation on the reference objects.

    The reference objects live in one private pod: its owner, a pod moderator, a member and a
    member banned from it. The pod's session, post, resource and calendar event are the
    owner's; the comment, report, notification, login session, AI conversation and held item
    are the member's. An outsider is a signed-in user with no tie to the pod; admin is a
    platform admin (users.role 'admin') with no tie to it either. `anonymous` sends no token.
    Creation routes are called with a valid body naming the pod; routes about a user name the
    member (the banned member, to lift a ban). The matrix test keeps the bodies it sends.
    """

    anonymous: int
    outsider: int
    member: int
    banned: int
    moderator: int
    owner: int
    admin: int

    def status_for(self, caller: str) -> int:
        status: int = getattr(self, caller)
        return status


def access(default: int, **by_caller: int) -> Access:
    """An `Access` where every caller gets `default` except those named."""
    unknown = set(by_caller) - set(CALLERS)
    if unknown:
        raise TypeError(f"unknown callers: {sorted(unknown)}")
    return Access(**{caller: by_caller.get(caller, default) for caller in CALLERS})


def signed_in(status: int, **by_caller: int) -> Access:
    """Any signed-in caller gets `status` (anonymous gets 401) unless named."""
    return access(status, **{"anonymous": 401, **by_caller})


class FieldProblem(msgspec.Struct):
    field: str
    reason: str


class ErrorBody(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """The one error shape: a code to branch on, a message for people, the fields at fault
    (422), the held item (held_for_review), and the request id to quote to support."""

    code: str
    message: str
    details: list[FieldProblem] | msgspec.UnsetType = msgspec.UNSET
    held: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    request_id: str


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    """A handler's answer when the status or headers vary (200 vs 201, quota headers)."""

    value: T
    status: int = 200
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Raw:
    """A response that is not a JSON model: its media type and what it is."""

    media_type: str
    description: str
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation's contract, attached to its aiohttp handler."""

    summary: str
    description: str
    tag: str
    access: Access
    body: type | None
    query: type | None
    query_lists: tuple[str, ...]
    empty_body: bool
    response: Any  # a type msgspec can describe, or None for 204
    success: tuple[int, ...]
    errors: tuple[int, ...]
    raw: Mapping[int, Raw] = field(default_factory=dict)
    public: bool = False
    # A body the handler reads itself (files): media type -> JSON schema of the content.
    raw_body: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


OPERATION_ATTR = "peerspark_operation"

# A file sent as the `file` field of a form.
FILE_FORM: Mapping[str, Any] = {
    "type": "object",
    "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}},
    "required": ["file"],
}

# Errors every operation of a kind can answer with, so a declaration lists only its own.
BODY_ERRORS = (400, 408, 413, 415, 422)
QUERY_ERRORS = (422,)
AUTH_ERRORS = (401,)
PATH_ERRORS = (404,)


def operation_of(handler: Any) -> Operation | None:
    """The contract declared for a route's handler, if any."""
    op = getattr(handler, OPERATION_ATTR, None)
    return op if isinstance(op, Operation) else None


def operation(
    *,
    access: Access,
    status: int | tuple[int, ...] | None = None,
    errors: tuple[int, ...] = (),
    tag: str,
    summary: str | None = None,
    empty_body: bool = False,
    public: bool = False,
    raw: Mapping[int, Raw] | None = None,
    raw_body: Mapping[str, Mapping[str, Any]] | None = None,
    precheck: Callable[[web.Request], None] | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Handler]:
    """Declare a handler's contract and adapt it to aiohttp.

    The handler takes the request plus `body` and/or `query` parameters; their annotations are
    the types the request is decoded into (422 naming the field when it does not fit). It
    returns its response model (rendered as JSON with the first `status`, 200 unless given),
    a `Reply` (status and headers chosen at run time), None (204), or an aiohttp response it
    built itself (described by `raw`). A handler that reads a file body itself describes it in
    `raw_body`. `public` handlers take no access token. `precheck` runs before anything is
    decoded (a feature that is switched off answers so whatever the body holds).
    """

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Handler:
        hints = typing.get_type_hints(fn)
        params = inspect.signature(fn).parameters
        extra = set(params) - {"request", "body", "query"}
        if extra:
            raise TypeError(f"{fn.__qualname__}: unexpected parameters {sorted(extra)}")
        body_type = hints.get("body") if "body" in params else None
        query_type = hints.get("query") if "query" in params else None
        response = _response_type(hints.get("return"))
        if status is None:
            success: tuple[int, ...] = (204,) if response is None and not raw else (200,)
        else:
            success = (status,) if isinstance(status, int) else status
        doc = inspect.getdoc(fn) or ""
        first, _, rest = doc.partition("\n")
        op = Operation(
            summary=summary or first or fn.__name__.replace("_", " "),
            description=rest.strip() if not summary else doc,
            tag=tag,
            access=access,
            body=body_type,
            query=query_type,
            query_lists=_list_fields(query_type) if query_type is not None else (),
            empty_body=empty_body,
            response=response,
            success=success,
            errors=tuple(sorted(set(errors))),
            raw=dict(raw or {}),
            public=public,
            raw_body=dict(raw_body or {}),
        )

        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if precheck is not None:
                precheck(request)
            if query_type is not None:
                kwargs["query"] = read_query(request, query_type, lists=op.query_lists)
            if body_type is not None:
                kwargs["body"] = await read_body(request, body_type, allow_empty=empty_body)
            result = await fn(request, **kwargs)
            return render(op, result)

        setattr(handler, OPERATION_ATTR, op)
        if public:
            handler.__dict__["public"] = True
        return handler

    return decorate


def render(op: Operation, result: Any) -> web.StreamResponse:
    """A handler's return value as the response its contract promises."""
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, Encoded):  # a body already encoded (a cached read's page)
        return web.Response(body=result.body, status=op.success[0], content_type="application/json")
    if isinstance(result, Reply):
        if result.status not in op.success:
            raise RuntimeError(f"{op.summary}: status {result.status} is not declared")
        headers = dict(result.headers) if result.headers else None
        return json_response(result.value, status=result.status, headers=headers)
    if result is None:
        return no_content()
    return json_response(result, status=op.success[0])


def _response_type(annotation: Any) -> Any:
    """The JSON model a handler's return annotation promises (None: no body)."""
    if annotation is None or annotation is type(None):
        return None
    members = get_args(annotation) if _is_union(annotation) else (annotation,)
    models = [m for m in members if not _is_aiohttp_response(m)]
    if not models:
        return None
    if len(models) != 1:
        raise TypeError(f"one response model expected, got {models}")
    model = models[0]
    if get_origin(model) in (Reply, Encoded):
        return get_args(model)[0]
    return model


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


def _is_aiohttp_response(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, web.StreamResponse)


def _list_fields(query_type: type) -> tuple[str, ...]:
    """Query parameters that may repeat (list fields of the query model), by wire name."""
    info = msgspec.inspect.type_info(query_type)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{query_type!r}: a query model must be a msgspec Struct")
    names = []
    for f in info.fields:
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if any(isinstance(k, msgspec.inspect.ListType) for k in kinds):
            names.append(f.encode_name)
    return tuple(names)
