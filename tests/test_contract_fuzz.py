"""Property-based fuzzing of every operation of /api/openapi.json with schemathesis, against the
real product (a real socket, PostgreSQL, Redis, AI through a fake OpenAI server), signed in as a
real user who owns a private pod full of real objects. Valid and invalid requests alike must
get no 5xx, every error in the one error shape (with the request id it was sent under), and
every response must match the status codes, media types and schemas the document declares.

Bounded for `make test`: PEERSPARK_FUZZ_EXAMPLES examples per operation and mode (default 15,
seed 0, so CI tries the same cases each time). `make fuzz` explores at length with a fresh seed
(PEERSPARK_FUZZ_EXAMPLES=200 PEERSPARK_FUZZ_SEED=random); PEERSPARK_FUZZ_SEED=<n> replays one.
The counts are printed in pytest's summary.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from peerspark_rt.http.contract import ErrorResponse
from tests.conftest import searchable_tmpdir
from tests.contract_world import (
    Account,
    Cast,
    Client,
    World,
    contract_settings,
    make_cast,
    make_world,
    new_conversation,
    new_login,
)
from tests.live_app import LiveApp

EXAMPLES = int(os.environ.get("PEERSPARK_FUZZ_EXAMPLES", "15"))
_SEED_SETTING = os.environ.get("PEERSPARK_FUZZ_SEED", "0")
SEED = random.randrange(2**32) if _SEED_SETTING == "random" else int(_SEED_SETTING)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Stats:
    operations: set[str] = field(default_factory=set)
    examples: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    rebuilds: int = 0

    def report(self, seconds: float, failures: int) -> str:
        seen = ", ".join(f"{s}x{n}" for s, n in sorted(self.statuses.items()))
        return (
            f"schemathesis: {len(self.operations)} operations, {self.examples} examples "
            f"({EXAMPLES} per operation and mode, seed {SEED}) in {seconds:.0f}s; "
            f"5xx = {self.server_errors}; failed operations = {failures}; "
            f"world rebuilt {self.rebuilds}x; statuses: {seen}"
        )


@dataclass
class Target:
    """The running product, the fuzzing user (the pod's owner) and the objects real ids come
    from. Objects a fuzzed call destroyed are built again before the next call."""

    live: LiveApp
    client: Client
    cast: Cast
    world: World
    mine: dict[str, str]  # the owner's own conversation, second login, notification
    stats: Stats = field(default_factory=Stats)
    dirty: bool = False

    @property
    def me(self) -> Account:
        return self.cast.owner

    def fresh(self) -> World:
        if self.dirty:
            self.world = make_world(self.client, self.cast, self.world.personal)
            self.dirty = False
            self.stats.rebuilds += 1
        return self.world

    def real_id(self, path: str, name: str) -> str | None:
        world = self.fresh()
        if path.startswith("/api/auth/sessions/"):
            return self.mine["login"]
        values = {
            "podId": world.pod,
            "sessionId": world.session,
            "postId": world.post,
            "commentId": world.comment,
            "resourceId": world.resource,
            "eventId": world.event,
            "reportId": world.report,
            "heldId": world.held,
            "challengeId": world.challenge,
            "achievementId": world.achievement,
            "conversationId": self.mine["conversation"],
            "notificationId": self.mine.get("notification"),
            "userId": self.cast.member.id,
            "id": self.cast.member.id,
            "token": world.personal.feed_token,
            "key": world.personal.file_path.removeprefix("/api/files/"),
        }
        return values.get(name)


@pytest.fixture(scope="module")
def target(pg_dsn: str, redis_url: str) -> Iterator[Target]:
    data_dir: Path = searchable_tmpdir()
    live = LiveApp(lambda fake: contract_settings(pg_dsn, data_dir, redis_url, fake))
    live.start()
    client = Client(live.base_url)
    try:
        cast = make_cast(client, pg_dsn)
        world = make_world(client, cast)
        owner = cast.owner
        notes = client.ok("GET", "/api/notifications", owner.token)["notifications"]
        mine = {"conversation": new_conversation(client, owner), "login": new_login(client, owner)}
        if notes:
            mine["notification"] = notes[0]["id"]
        yield Target(live, client, cast, world, mine)
    finally:
        client.close()
        live.stop()


# Body fields that name objects: a real id there reaches past "no such pod".
_BODY_IDS: dict[str, Callable[[Target], str]] = {
    "podId": lambda t: t.fresh().pod,
    "relatedPodId": lambda t: t.fresh().pod,
    "sharedWithPodId": lambda t: t.fresh().pod,
    "shareWithPodId": lambda t: t.fresh().pod,
    "sessionId": lambda t: t.fresh().session,
    "relatedSessionId": lambda t: t.fresh().session,
    "contentId": lambda t: t.fresh().post,
    "postId": lambda t: t.fresh().post,
    "parentCommentId": lambda t: t.fresh().comment,
    "userId": lambda t: t.cast.member.id,
    "shareWithUserId": lambda t: t.cast.member.id,
    "conversationId": lambda t: t.mine["conversation"],
}

# Calls after which the reference objects may be gone or changed beyond use.
_DESTRUCTIVE = ("/ban", "/end", "/leave", "/resolve", "/approve", "/reject")


def _negated(case: Any) -> set[str]:
    """Where schemathesis made the case invalid on purpose ("path", "header", "query", "body")."""
    components = case.meta.components if case.meta is not None else {}
    return {
        location.value
        for location, info in components.items()
        if info.mode is GenerationMode.NEGATIVE
    }


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _use_real_ids(target: Target, case: Any, path: str, negated: set[str]) -> None:
    """Swap generated ids for real ones, where the id is valid anyway (never the part that
    schemathesis made invalid on purpose)."""
    if "path" not in negated:
        for name in list(case.path_parameters or {}):
            value = target.real_id(path, name)
            if value is not None:
                case.path_parameters[name] = value
        if path == "/api/files/{key}" and "query" not in negated:
            case.query = {**(case.query or {}), **target.fresh().personal.file_query}
    for container in (case.query, case.body):
        if isinstance(container, dict):
            for name, real in _BODY_IDS.items():
                if _is_uuid(container.get(name)):
                    container[name] = real(target)


def _after(target: Target, method: str, path: str, status: int) -> None:
    """Keep the fuzzing user signed in and the reference objects usable."""
    if status >= 300:
        return
    if path in ("/api/auth/logout", "/api/web/logout") or path.startswith("/api/auth/sessions/"):
        target.me.login(target.client)
        target.mine["login"] = new_login(target.client, target.me)
    elif path.startswith("/api/ai/conversations/") and method == "DELETE":
        target.mine["conversation"] = new_conversation(target.client, target.me)
    elif path.startswith("/api/calendar/feed") and method in ("POST", "DELETE"):
        target.world.personal.feed_token = target.client.ok(
            "POST", "/api/calendar/feed", target.me.token
        )["token"]
    elif method == "DELETE" or path.endswith(_DESTRUCTIVE) or "/members/" in path:
        target.dirty = True


def _header(response: Any, name: str) -> str:
    values = response.headers.get(name.lower()) or [""]
    return str(values[0])


def _error_shape(response: Any) -> None:
    """Every error is the one error model, carrying the id the response was sent under."""
    if response.status_code < 400:
        return
    content_type = _header(response, "Content-Type")
    assert content_type.startswith("application/json"), (response.status_code, content_type)
    error = msgspec.json.decode(response.content, type=ErrorResponse)
    assert error.error.request_id, "an error without a requestId"
    assert error.error.request_id == _header(response, "X-Request-Id")


def _fuzz(target: Target, operation: Any, mode: GenerationMode) -> None:
    path, method = operation.path, operation.method.upper()
    label = f"{method} {path}"

    # The token is fixed (and replaced by the live one at call time): schemathesis would
    # otherwise spend most invalid cases on a missing token, which the authorization matrix
    # covers; invalid cases are about paths, queries and bodies.
    strategy = operation.as_strategy(
        generation_mode=mode, headers={"Authorization": "Bearer placeholder"}
    )

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    # three cases in four name the real objects; the rest keep their made-up ids
    @given(case=strategy, real=st.integers(0, 3))
    def one(case: Any, real: int) -> None:
        negated = _negated(case)
        if real:
            _use_real_ids(target, case, path, negated)
        headers = {"Authorization": f"Bearer {target.me.token}"}
        response = case.call(
            base_url=target.live.base_url,
            session=target.client.http,
            headers=headers,
            timeout=30,
            allow_redirects=False,
        )
        stats = target.stats
        stats.operations.add(label)
        stats.examples += 1
        stats.statuses[response.status_code] += 1
        if response.status_code >= 500:
            stats.server_errors += 1
        _after(target, method, path, response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)
        _error_shape(response)

    one()


def test_every_operation_holds_its_contract_under_fuzzing(
    target: Target, record_property: Callable[[str, object], None]
) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{target.live.base_url}/api/openapi.json")
    failures: list[str] = []
    fuzzed = {cast(Any, result).ok().label for result in schema.get_all_operations()}
    document = target.client.ok("GET", "/api/openapi.json")
    declared = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item}
    # schemathesis leaves out the operation that serves the document it loaded
    assert fuzzed == declared - {"GET /api/openapi.json"}
    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(target, operation, mode)
            except Unsatisfiable:
                continue  # nothing about the operation can be made invalid (no inputs)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 (report every failing operation)
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    report = target.stats.report(time.monotonic() - started, len(failures))
    record_property("summary", report)  # printed in the run's summary (conftest)
    assert not failures, report + "\n\n" + "\n\n".join(f[:3000] for f in failures)
    assert target.stats.server_errors == 0, report
    assert target.stats.operations == fuzzed, report
