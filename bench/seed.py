"""Accounts and rooms for a run.

Registering an account costs an argon2 hash on the server (~50 ms of CPU), so ten thousand of
them would take minutes. Two ways around it:

* `DirectSeeder` (the harness owns the database and the node's JWT secrets): bench accounts are
  inserted straight into PostgreSQL, all with one password hash made once by the product's own
  hasher (password `BENCH_PASSWORD`), each with one long-lived login session, and their access
  tokens are signed with the node's secret by the product's own `TokenIssuer`. The accounts
  stay in the database (kept in the output folder) and are reused by later runs.
* `RestSeeder` (any `--target`): accounts are registered through `POST /api/auth/register`
  (several at a time) and cached in the output folder; later runs refresh their tokens with
  `POST /api/auth/refresh` (no hashing) and log in only when a session has ended.

Rooms are always made through the REST API: a group study session per room, its members added
with `POST /api/sessions/{id}/join` before anyone connects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg

from peerspark_rt.accounts.passwords import hash_password
from peerspark_rt.accounts.tokens import AccessClaims, TokenIssuer

BENCH_DOMAIN = "bench.peerspark.local"
BENCH_PASSWORD = "Bench-load-2026"
BENCH_AGENT = "peerspark-bench"
SESSION_DAYS = 30
ACCESS_TTL = 900  # the product's default access token lifetime

T = TypeVar("T")


@dataclass
class Account:
    id: str
    username: str
    token: str


async def gather_limited(
    items: Sequence[T], worker: Callable[[T], Awaitable[Any]], concurrency: int
) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with gate:
            return await worker(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


# --- straight into the database ----------------------------------------------------------------


class DirectSeeder:
    """Bench accounts inserted into PostgreSQL; tokens signed with the node's secret."""

    def __init__(self, dsn: str, jwt_secret: str, jwt_refresh_secret: str) -> None:
        self.dsn = dsn
        self.issuer = TokenIssuer(jwt_secret, jwt_refresh_secret, ACCESS_TTL)

    async def accounts(self, count: int, log: Callable[[str], None]) -> list[Account]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await self._accounts(conn, count, log)
        finally:
            await conn.close()

    async def _accounts(
        self, conn: asyncpg.Connection, count: int, log: Callable[[str], None]
    ) -> list[Account]:
        names = [f"bench{i:06d}" for i in range(count)]
        emails = [f"{n}@{BENCH_DOMAIN}" for n in names]
        have = await conn.fetchval(
            "SELECT count(*) FROM users WHERE email = ANY($1::text[])", emails
        )
        if have < count:
            log(f"seeding {count - have} bench accounts straight into PostgreSQL")
            password_hash = await hash_password(BENCH_PASSWORD)
            await conn.execute(
                """INSERT INTO users (email, username, password_hash, first_name, last_name)
                   SELECT e, u, $3, 'Bench', 'User' FROM unnest($1::text[], $2::text[]) AS t(e, u)
                   ON CONFLICT DO NOTHING""",
                emails,
                names,
                password_hash,
            )
        users = await conn.fetch(
            """SELECT id, username::text AS username, email::text AS email, role, is_premium
               FROM users WHERE email = ANY($1::text[])""",
            emails,
        )
        by_name = {r["username"]: r for r in users}
        ids = [r["id"] for r in users]
        sessions = {
            r["user_id"]: r["id"]
            for r in await conn.fetch(
                """SELECT DISTINCT ON (user_id) user_id, id FROM user_sessions
                   WHERE user_id = ANY($1::uuid[]) AND device_info->>'userAgent' = $2
                     AND expires_at > now() + interval '1 day'
                   ORDER BY user_id, expires_at DESC""",
                ids,
                BENCH_AGENT,
            )
        }
        missing = [i for i in ids if i not in sessions]
        if missing:
            rows = await conn.fetch(
                """INSERT INTO user_sessions (user_id, session_token, refresh_token, device_info,
                                              expires_at, remember_me)
                   SELECT u, t, r, jsonb_build_object('userAgent', $4::text),
                          now() + make_interval(days => $5), true
                   FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(u, t, r)
                   RETURNING user_id, id""",
                missing,
                [secrets.token_urlsafe(32) for _ in missing],
                [hashlib.sha256(secrets.token_bytes(24)).hexdigest() for _ in missing],
                BENCH_AGENT,
                SESSION_DAYS,
            )
            sessions.update({r["user_id"]: r["id"] for r in rows})
        out: list[Account] = []
        for name in names:
            row = by_name[name]
            token = self.issuer.access_token(
                AccessClaims(
                    user_id=row["id"],
                    session_id=sessions[row["id"]],
                    username=row["username"],
                    email=row["email"],
                    role=row["role"],
                    is_premium=row["is_premium"],
                )
            )
            out.append(Account(str(row["id"]), row["username"], token))
        return out


# --- through the REST API ----------------------------------------------------------------------


class RestError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {status}: {str(body)[:400]}")
        self.status = status


class RestApi:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.session = session

    async def call(
        self, method: str, path: str, token: str | None = None, json_body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, json=json_body, headers=headers
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def ok(
        self, method: str, path: str, token: str | None = None, json_body: Any = None
    ) -> Any:
        status, body = await self.call(method, path, token, json_body)
        if status >= 300:
            raise RestError(method, path, status, body)
        return body


@dataclass
class _Cached:
    id: str
    username: str
    email: str
    password: str
    refresh: str


class RestSeeder:
    """Accounts registered through the API and cached in `cache_file` for later runs."""

    def __init__(self, api: RestApi, cache_file: Path, concurrency: int = 8) -> None:
        self.api = api
        self.cache_file = cache_file
        self.concurrency = concurrency

    def _load(self) -> list[_Cached]:
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return []
        return [_Cached(**a) for a in data.get("accounts", [])]

    def _save(self, cached: list[_Cached]) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"target": self.api.base, "accounts": [asdict(c) for c in cached]})
        )
        tmp.replace(self.cache_file)

    async def accounts(self, count: int, log: Callable[[str], None]) -> list[Account]:
        cached = self._load()
        reuse = cached[:count]
        tokens: dict[str, str] = {}

        async def renew(c: _Cached) -> None:
            status, body = await self.api.call(
                "POST", "/api/auth/refresh", json_body={"refreshToken": c.refresh}
            )
            if status == 200:
                c.refresh = body["refreshToken"]
                tokens[c.id] = body["accessToken"]
                return
            body = await self.api.ok(
                "POST",
                "/api/auth/login",
                json_body={"email": c.email, "password": c.password, "rememberMe": True},
            )
            c.refresh = body["refreshToken"]
            tokens[c.id] = body["accessToken"]

        if reuse:
            log(f"reusing {len(reuse)} cached bench accounts of {self.api.base}")
            results = await gather_limited(reuse, _safe(renew), self.concurrency * 4)
            dead = {c.id for c, ok in zip(reuse, results, strict=True) if not ok}
            if dead:  # deleted meanwhile (a fresh database): forget them
                cached = [c for c in cached if c.id not in dead]
                reuse = [c for c in reuse if c.id not in dead]
        fresh_needed = count - len(reuse)
        if fresh_needed > 0:
            log(
                f"registering {fresh_needed} bench accounts through the API "
                f"({self.concurrency} at a time; each costs the server an argon2 hash)"
            )
            batch = secrets.token_hex(3)
            made: list[_Cached] = []

            async def register(i: int) -> None:
                name = f"b{batch}{i:06d}"
                email = f"{name}@{BENCH_DOMAIN}"
                body = await self.api.ok(
                    "POST",
                    "/api/auth/register",
                    json_body={
                        "email": email,
                        "username": name,
                        "password": BENCH_PASSWORD,
                        "firstName": "Bench",
                        "lastName": "User",
                    },
                )
                c = _Cached(body["user"]["id"], name, email, BENCH_PASSWORD, body["refreshToken"])
                tokens[c.id] = body["accessToken"]
                made.append(c)

            try:
                await gather_limited(range(fresh_needed), register, self.concurrency)
            finally:
                cached.extend(made)
                self._save(cached)
            reuse.extend(made)
        self._save(cached)
        return [Account(c.id, c.username, tokens[c.id]) for c in reuse[:count]]


def _safe(fn: Callable[[_Cached], Awaitable[None]]) -> Callable[[_Cached], Awaitable[bool]]:
    async def wrapped(c: _Cached) -> bool:
        try:
            await fn(c)
        except RestError:
            return False
        return True

    return wrapped


# --- rooms ---------------------------------------------------------------------------------------


async def create_rooms(
    api: RestApi, groups: Sequence[Sequence[Account]], log: Callable[[str], None]
) -> list[str]:
    """One group study session per group (its first account organizes it, the others join it
    over REST); returns the live room names."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    tag = uuid.uuid4().hex[:6]

    async def make(i: int) -> str:
        body = await api.ok(
            "POST",
            "/api/sessions",
            groups[i][0].token,
            {
                "title": f"Bench room {tag}-{i}",
                "sessionType": "group",
                "startTime": start.isoformat(),
                "endTime": (start + dt.timedelta(hours=4)).isoformat(),
                "tags": ["bench"],
            },
        )
        return str(body["id"])

    log(f"creating {len(groups)} study session(s) through the API")
    ids = await gather_limited(range(len(groups)), make, 16)
    joins = [(sid, a) for sid, group in zip(ids, groups, strict=True) for a in group[1:]]
    if joins:
        log(f"adding {len(joins)} participants (POST /api/sessions/{{id}}/join)")

    async def join(item: tuple[str, Account]) -> None:
        sid, account = item
        await api.ok("POST", f"/api/sessions/{sid}/join", account.token)

    await gather_limited(joins, join, 32)
    return [f"session:{sid}" for sid in ids]
