"""Sign in with a provider, end to end over real HTTP: a small OpenID provider started here
(discovery, authorize with PKCE, token endpoint, RS256 ID tokens, JWKS) stands in for Google.
The browser is an aiohttp session with cookies that follows each redirect by hand."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import PASSWORD, Api

CLIENT_ID, CLIENT_SECRET = "peerspark-test", "s3cret-of-the-client"


@dataclass
class Provider:
    """An OpenID provider: signs in whoever `identity` says, after checking PKCE."""

    url: str = ""
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    identity: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        assert q["client_id"] == CLIENT_ID
        assert q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"], "nonce": q["nonce"],
            "redirect_uri": q["redirect_uri"], "identity": dict(self.identity),
        }  # fmt: skip
        return web.Response(
            status=302, headers={"Location": f"{q['redirect_uri']}?code={code}&state={q['state']}"}
        )

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.codes.pop(str(form["code"]), None)
        if grant is None or form["redirect_uri"] != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form["code_verifier"])
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if digest.decode().rstrip("=") != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "why": "pkce"}, status=400)
        if form["client_secret"] != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        now = int(time.time())
        claims = {
            "iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": grant["nonce"], **grant["identity"],
        }  # fmt: skip
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return web.json_response(
            {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
             "expires_in": 3600, "id_token": id_token, "scope": "openid email profile"}
        )  # fmt: skip

    async def jwks(self, request: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return web.json_response({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", p.discovery)
    app.router.add_get("/authorize", p.authorize)
    app.router.add_post("/token", p.token)
    app.router.add_get("/jwks", p.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield p
    await runner.cleanup()


class Browser:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.base = str(api.client.make_url("/")).rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def go(self, url: str, **kw: Any) -> aiohttp.ClientResponse:
        resp = await self.http.get(url, allow_redirects=False, **kw)
        await resp.read()
        return resp

    async def sign_in(self, start: str = "/api/auth/oauth/google/start") -> str:
        """Start, through the provider, back to the callback: where the callback sends us."""
        to_provider = await self.go(self.base + start)
        assert to_provider.status == 302, await to_provider.text()
        back = await self.go(to_provider.headers["Location"])
        assert back.status == 302
        self.last_callback = back.headers["Location"]
        done = await self.go(self.last_callback)
        assert done.status == 302, await done.text()
        return done.headers["Location"]

    async def tokens(self, landing: str) -> Any:
        fragment = parse_qs(urlsplit(landing).fragment)
        resp = await self.api.post(
            "/api/auth/oauth/complete", json={"ticket": fragment["ticket"][0]}
        )
        assert resp.status == 200, resp.body
        return resp.body


@pytest.fixture
async def oauth_api(make_client: Any, provider: Provider) -> AsyncIterator[tuple[Api, Browser]]:
    api: Api = await make_client(
        oauth_google_client_id=CLIENT_ID, oauth_google_client_secret=CLIENT_SECRET,
        oauth_google_issuer=provider.url,
    )  # fmt: skip
    browser = Browser(api)
    yield api, browser
    await browser.http.close()


async def test_sign_in_with_a_provider_creates_an_account_and_refuses_replays(
    oauth_api: tuple[Api, Browser], provider: Provider
) -> None:
    api, browser = oauth_api
    email = f"sam{uuid.uuid4().hex[:6]}@example.com"
    provider.identity = {"sub": "g-1" + email, "email": email, "email_verified": True,
                         "name": "Sam Stone"}  # fmt: skip
    landing = await browser.sign_in()
    assert landing.startswith(browser.base + "/auth/complete#ticket=")
    ticket = parse_qs(urlsplit(landing).fragment)["ticket"][0]
    body = await browser.tokens(landing)
    user = body["user"]
    assert (user["email"], user["isVerified"], user["firstName"]) == (email, True, "Sam")
    again = await api.post("/api/auth/oauth/complete", json={"ticket": ticket})
    assert (again.status, again.body["error"]["code"]) == (400, "invalid_ticket")
    # the callback again (a replayed state and code) is refused
    replay = await browser.go(browser.last_callback)
    assert replay.status == 400
    # the same provider account signs the same user in
    second = await browser.tokens(await browser.sign_in())
    assert second["user"]["id"] == user["id"]
    token = {"Authorization": f"Bearer {second['accessToken']}"}
    methods = await api.get("/api/auth/oauth/accounts", headers=token)
    assert methods.body["hasPassword"] is False
    assert [p["provider"] for p in methods.body["providers"]] == ["google"]
    last = await api.delete("/api/auth/oauth/google", headers=token)
    assert (last.status, last.body["error"]["code"]) == (409, "last_sign_in_method")


async def test_a_callback_from_another_browser_or_with_a_forged_state_is_refused(
    oauth_api: tuple[Api, Browser], provider: Provider
) -> None:
    api, browser = oauth_api
    provider.identity = {"sub": "g-2", "email": "x@example.com", "email_verified": True}
    to_provider = await browser.go(browser.base + "/api/auth/oauth/google/start")
    back = await browser.go(to_provider.headers["Location"])
    callback = back.headers["Location"]
    # a victim's browser is handed the attacker's callback: no state cookie there
    other = Browser(api)
    try:
        stolen = await other.go(callback)
        assert stolen.status == 400
        assert (await stolen.json())["error"]["code"] == "oauth_state"
    finally:
        await other.http.close()
    forged = await browser.go(callback.replace("state=", "state=x"))
    assert forged.status == 400
    unknown = await browser.go(browser.base + "/api/auth/oauth/myspace/start")
    assert unknown.status == 404
    denied = await browser.go(browser.base + "/api/auth/oauth/google/callback?error=access_denied")
    assert (await denied.json())["error"]["code"] == "oauth_denied"


async def test_a_provider_links_to_an_existing_account_only_when_both_verified_the_email(
    oauth_api: tuple[Api, Browser], provider: Provider, db: Any
) -> None:
    api, browser = oauth_api
    ann = await api.register()
    provider.identity = {"sub": "g-ann" + ann.id, "email": ann.email, "email_verified": False}
    refused = await browser.go(browser.base + "/api/auth/oauth/google/start")
    back = await browser.go(refused.headers["Location"])
    answer = await browser.go(back.headers["Location"])
    assert answer.status == 409  # the provider did not vouch for the address
    provider.identity["email_verified"] = True
    to_provider = await browser.go(browser.base + "/api/auth/oauth/google/start")
    back = await browser.go(to_provider.headers["Location"])
    assert (await browser.go(back.headers["Location"])).status == 409  # ann is unverified
    await db.execute("UPDATE users SET is_verified = TRUE WHERE id = $1", uuid.UUID(ann.id))
    body = await browser.tokens(await browser.sign_in())
    assert body["user"]["id"] == ann.id
    # she keeps her password, so the provider may go
    assert (await api.delete("/api/auth/oauth/google", ann)).status == 204
    assert (await api.delete("/api/auth/oauth/google", ann)).status == 404
    # and a signed-in user links it again from their account
    link = await browser.http.post(browser.base + "/api/auth/oauth/google/link", headers=ann.auth)
    assert link.status == 200
    url = (await link.json())["authorizationUrl"]
    back = await browser.go(url)
    landing = await browser.go(back.headers["Location"])
    assert landing.headers["Location"].endswith("#linked=google")
    login = {"email": ann.email, "password": PASSWORD}
    assert (await api.post("/api/auth/login", json=login)).status == 200
