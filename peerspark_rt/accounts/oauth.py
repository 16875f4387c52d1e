"""Sign in with Google, GitHub or Discord: the OAuth 2 authorization-code flow with PKCE (S256)
and state, through Authlib (its httpx client for the token exchange, joserfc and its OpenID
claims checks for Google's signed ID token).

* The state is random, kept hashed with the PKCE verifier and OpenID nonce (oauth_states), used
  once within OAUTH_STATE_TTL, and must come back from the same browser (an HttpOnly cookie
  holds it): a callback carrying someone else's state is refused.
* A provider account already linked signs its user in. Otherwise an account with the same
  email is linked only when the provider says the address is verified AND the account's own
  address is verified; an unverified match is refused (sign in with the password and link the
  provider from the account instead). With no match, an account is created (no password;
  verified when the provider vouched for the address).
* The browser leaves the callback for OAUTH_COMPLETE_URL with a one-time ticket in the URL
  fragment; the page exchanges it (POST /api/auth/oauth/complete) for the usual tokens.
* A provider unlinks only while the account keeps a way in: a password or another provider.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from aiohttp import web
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from ..errors import BadRequest, Conflict, Forbidden, NotFound, UpstreamError
from . import db as users_db
from . import links
from .auth import AuthResult, AuthService, ClientInfo, Principal
from .db import oauth as oauth_db
from .db import tokens as tokens_db

log = logging.getLogger(__name__)

PROVIDERS = ("google", "github", "discord")
TICKET_TTL = 120  # seconds the browser has to exchange its ticket
_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9_]")

ProviderKind = Literal["oidc", "github", "discord"]


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    kind: ProviderKind
    client_id: str
    client_secret: str
    scope: str
    issuer: str | None = None  # OpenID: endpoints come from its discovery document
    authorize_url: str | None = None
    token_url: str | None = None
    api_url: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str | None
    email_verified: bool
    name: str
    login: str | None


class LinkedAccount(msgspec.Struct, rename="camel"):
    provider: str
    email: str | None
    email_verified: bool
    linked_at: dt.datetime


class SignInMethods(msgspec.Struct, rename="camel"):
    has_password: bool
    providers: list[LinkedAccount]
    available: list[str]


class AuthorizationUrl(msgspec.Struct, rename="camel"):
    authorization_url: str


class TicketExchange(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    ticket: str


def configured(settings: Any) -> dict[str, Provider]:
    """The providers with a client id and secret in the settings."""
    out: dict[str, Provider] = {}
    s = settings
    if s.oauth_google_client_id and s.oauth_google_client_secret:
        out["google"] = Provider(
            "google", "oidc", s.oauth_google_client_id, s.oauth_google_client_secret,
            "openid email profile", issuer=s.oauth_google_issuer.rstrip("/"),
        )  # fmt: skip
    if s.oauth_github_client_id and s.oauth_github_client_secret:
        base = s.oauth_github_url.rstrip("/")
        out["github"] = Provider(
            "github", "github", s.oauth_github_client_id, s.oauth_github_client_secret,
            "read:user user:email", authorize_url=f"{base}/login/oauth/authorize",
            token_url=f"{base}/login/oauth/access_token",
            api_url=s.oauth_github_api_url.rstrip("/"),
        )  # fmt: skip
    if s.oauth_discord_client_id and s.oauth_discord_client_secret:
        base = s.oauth_discord_url.rstrip("/")
        out["discord"] = Provider(
            "discord", "discord", s.oauth_discord_client_id, s.oauth_discord_client_secret,
            "identify email", authorize_url=f"{base}/oauth2/authorize",
            token_url=f"{base}/api/oauth2/token", api_url=f"{base}/api",
        )  # fmt: skip
    return out


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class OAuthService:
    def __init__(self, auth: AuthService) -> None:
        self.auth = auth
        self.db = auth.db
        self.settings = auth.settings
        self.providers = configured(self.settings)
        self._metadata: dict[str, dict[str, Any]] = {}

    def provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"sign-in with {name[:40]} is not available here")
        return provider

    def _client(self, provider: Provider, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            scope=provider.scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
            timeout=self.settings.oauth_timeout,
        )

    async def _openid(self, provider: Provider) -> dict[str, Any]:
        """The provider's discovery document (cached for the life of the node)."""
        cached = self._metadata.get(provider.name)
        if cached is not None:
            return cached
        url = f"{provider.issuer}/.well-known/openid-configuration"
        async with self._client(provider, "") as client:
            try:
                resp = await client.request("GET", url, withhold_token=True)
                resp.raise_for_status()
                metadata: dict[str, Any] = resp.json()
            except Exception as exc:  # noqa: BLE001 (any failure to reach the provider is a 502)
                raise UpstreamError(f"{provider.name} did not answer: {exc}") from None
        self._metadata[provider.name] = metadata
        return metadata

    async def _endpoints(self, provider: Provider) -> tuple[str, str]:
        if provider.kind == "oidc":
            meta = await self._openid(provider)
            return str(meta["authorization_endpoint"]), str(meta["token_endpoint"])
        if provider.authorize_url is None or provider.token_url is None:
            raise RuntimeError("provider endpoints are missing")
        return provider.authorize_url, provider.token_url

    # --- the flow ------------------------------------------------------------------------

    async def start(
        self, name: str, redirect_uri: str, link_user: Principal | None = None
    ) -> tuple[str, str]:
        """(the provider's authorization URL, the state the browser must bring back)."""
        provider = self.provider(name)
        authorize_url, _ = await self._endpoints(provider)
        state, verifier, nonce = generate_token(32), generate_token(64), generate_token(24)
        await oauth_db.insert_state(
            self.db.pool,
            state_hash=_digest(state),
            provider=name,
            code_verifier=verifier,
            nonce=nonce,
            link_user_id=link_user.user_id if link_user else None,
            expires_at=dt.datetime.now(dt.UTC)
            + dt.timedelta(seconds=self.settings.oauth_state_ttl),
        )
        extra = {"nonce": nonce} if provider.kind == "oidc" else {}
        async with self._client(provider, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                authorize_url, state=state, code_verifier=verifier, **extra
            )
        return str(url), state

    async def callback(
        self,
        name: str,
        redirect_uri: str,
        *,
        code: str | None,
        state: str | None,
        error: str | None,
        browser_state: str | None,
        client_info: ClientInfo,
    ) -> tuple[str, uuid.UUID]:
        """Finish the flow: ('ticket', one-time ticket) after a sign-in, ('linked', user id)
        after linking."""
        provider = self.provider(name)
        if error:
            raise BadRequest(f"{name} did not sign you in: {error[:100]}", code="oauth_denied")
        if not state or not code or len(state) > 200 or len(code) > 2048:
            raise BadRequest("the provider's answer lacks its code or state", code="oauth_state")
        if browser_state is None or not secrets.compare_digest(
            browser_state.encode("utf-8", "surrogatepass"), state.encode("utf-8", "surrogatepass")
        ):
            raise BadRequest("this sign-in was not started in this browser", code="oauth_state")
        flow = await oauth_db.take_state(self.db.pool, _digest(state))
        if flow is None or flow["provider"] != name:
            raise BadRequest("this sign-in is not known (or was used)", code="oauth_state")
        if flow["expires_at"] <= dt.datetime.now(dt.UTC):
            raise BadRequest("this sign-in took too long; start again", code="oauth_state")
        identity, scope = await self._identity(provider, redirect_uri, code, flow)
        if flow["link_user_id"] is not None:
            await self._link(flow["link_user_id"], name, identity, scope)
            return "linked", flow["link_user_id"]
        user_id = await self._resolve(name, identity, scope)
        async with self.db.transaction() as conn:
            ticket = await links.issue(
                conn, user_id=user_id, purpose="oauth_ticket", email=None, ttl=TICKET_TTL,
                replace=False,
            )  # fmt: skip
        return ticket, user_id

    async def complete(self, ticket: str, client_info: ClientInfo) -> AuthResult:
        """Exchange the callback's ticket (once, within two minutes) for tokens."""
        if not ticket or len(ticket) > 256 or not ticket.isascii():
            raise BadRequest("this sign-in ticket is not valid", code="invalid_ticket")
        async with self.db.transaction() as conn:
            row = await tokens_db.lock(conn, links.token_digest(ticket), ("oauth_ticket",))
            if (
                row is None
                or row["used_at"] is not None
                or row["expires_at"] <= dt.datetime.now(dt.UTC)
            ):
                raise BadRequest("this sign-in ticket is not valid", code="invalid_ticket")
            await tokens_db.mark_used(conn, row["id"])
        return await self.auth.sign_in_as(row["user_id"], client_info)

    async def _identity(
        self, provider: Provider, redirect_uri: str, code: str, flow: Any
    ) -> tuple[Identity, str | None]:
        _, token_url = await self._endpoints(provider)
        async with self._client(provider, redirect_uri) as client:
            try:
                token = await client.fetch_token(
                    token_url,
                    code=code,
                    code_verifier=flow["code_verifier"],
                    grant_type="authorization_code",
                )
                if provider.kind == "oidc":
                    identity = await self._id_token(provider, client, token, flow["nonce"])
                elif provider.kind == "github":
                    identity = await _github(client, provider)
                else:
                    identity = await _discord(client, provider)
            except (OAuthError, JoseError, KeyError, ValueError) as exc:
                raise BadRequest(
                    f"{provider.name} did not confirm the sign-in: {exc}", code="oauth_failed"
                ) from None
            except UpstreamError:
                raise
            except Exception as exc:  # noqa: BLE001 (httpx's network errors: the provider is down)
                raise UpstreamError(f"{provider.name} did not answer: {exc}") from None
        return identity, token.get("scope")

    async def _id_token(
        self, provider: Provider, client: AsyncOAuth2Client, token: Any, nonce: str
    ) -> Identity:
        """Google's ID token: signed by a key of the provider's JWKS, for us, from the issuer,
        not expired, with our nonce."""
        meta = await self._openid(provider)
        resp = await client.request("GET", str(meta["jwks_uri"]), withhold_token=True)
        resp.raise_for_status()
        keys = KeySet.import_key_set(resp.json())
        algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        decoded = jwt.decode(token["id_token"], keys, registry=JWSRegistry(algorithms=algorithms))
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {"iss": {"values": [meta["issuer"]]}},
            {
                "nonce": nonce,
                "client_id": provider.client_id,
                "access_token": token["access_token"],
            },
        )
        claims.validate(leeway=60)
        return Identity(
            subject=str(claims["sub"]),
            email=claims.get("email"),
            email_verified=claims.get("email_verified") is True,
            name=str(claims.get("name") or claims.get("given_name") or ""),
            login=None,
        )

    # --- accounts ------------------------------------------------------------------------

    async def _link(
        self, user_id: uuid.UUID, name: str, identity: Identity, scope: str | None
    ) -> None:
        async with self.db.transaction() as conn:
            current = await oauth_db.linked(conn, name, identity.subject)
            if current is not None:
                if current["user_id"] == user_id:
                    return
                raise Conflict(
                    f"this {name} account is linked to another PeerSpark account",
                    code="provider_linked_elsewhere",
                )
            await oauth_db.link(
                conn, user_id=user_id, provider=name, subject=identity.subject,
                email=identity.email, email_verified=identity.email_verified, scope=scope,
            )  # fmt: skip

    async def _resolve(self, name: str, identity: Identity, scope: str | None) -> uuid.UUID:
        async with self.db.transaction() as conn:
            current = await oauth_db.linked(conn, name, identity.subject)
            if current is not None:
                if current["account_status"] != "active":
                    raise Forbidden(
                        f"account is {current['account_status']}", code="account_inactive"
                    )
                linked_user: uuid.UUID = current["user_id"]
                return linked_user
            if not identity.email:
                raise BadRequest(
                    f"{name} did not share an email address; allow it and try again",
                    code="oauth_no_email",
                )
            existing = await oauth_db.user_for_email(conn, identity.email)
            if existing is not None:
                if not (identity.email_verified and existing["is_verified"]):
                    raise Conflict(
                        "an account already uses this email address: sign in with its password "
                        f"and link {name} from your account (both sides must have verified the "
                        "address to link them by email)",
                        code="account_exists",
                    )
                if existing["account_status"] != "active":
                    raise Forbidden(
                        f"account is {existing['account_status']}", code="account_inactive"
                    )
                user_id: uuid.UUID = existing["id"]
            else:
                user_id = await self._create(conn, identity)
            await oauth_db.link(
                conn, user_id=user_id, provider=name, subject=identity.subject,
                email=identity.email, email_verified=identity.email_verified, scope=scope,
            )  # fmt: skip
        return user_id

    async def _create(self, conn: Any, identity: Identity) -> uuid.UUID:
        base = _USERNAME_CHARS.sub("", identity.login or (identity.email or "").partition("@")[0])
        base = (base or "student")[:40]
        username = base
        while len(username) < 3 or await oauth_db.username_taken(conn, username):
            username = f"{base}_{secrets.token_hex(3)}"
        first, _, last = (identity.name or username).strip().partition(" ")
        row = await users_db.insert_user(
            conn,
            {
                "email": identity.email,
                "username": username,
                "password_hash": "",  # no password: signs in with the provider
                "first_name": (first or username)[:100],
                "last_name": (last or "-")[:100],
                "is_verified": identity.email_verified,
            },
        )
        if not identity.email_verified and identity.email:
            await self.auth.send_verification(conn, row["id"], identity.email, row["first_name"])
        created: uuid.UUID = row["id"]
        return created

    async def methods(self, principal: Principal) -> SignInMethods:
        row = await users_db.credentials_by_id(self.db.pool, principal.user_id)
        if row is None:
            raise NotFound("user not found")
        rows = await oauth_db.links_of(self.db.pool, principal.user_id)
        return SignInMethods(
            has_password=bool(row["password_hash"]),
            providers=[
                LinkedAccount(r["provider"], r["email"], r["email_verified"], r["created_at"])
                for r in rows
            ],
            available=sorted(self.providers),
        )

    async def unlink(self, principal: Principal, name: str) -> None:
        if name not in PROVIDERS:
            raise NotFound(f"no provider called {name[:40]}")
        async with self.db.transaction() as conn:
            row = await users_db.credentials_by_id(conn, principal.user_id)
            if row is None:
                raise NotFound("user not found")
            rows = await oauth_db.links_of(conn, principal.user_id)
            if name not in {r["provider"] for r in rows}:
                raise NotFound(f"{name} is not linked to your account")
            if not row["password_hash"] and len(rows) < 2:
                raise Conflict(
                    f"{name} is your only way to sign in: set a password (password reset) or "
                    "link another provider first",
                    code="last_sign_in_method",
                )
            await oauth_db.unlink(conn, principal.user_id, name)


async def _github(client: AsyncOAuth2Client, provider: Provider) -> Identity:
    headers = {"Accept": "application/vnd.github+json"}
    user = (await client.get(f"{provider.api_url}/user", headers=headers)).raise_for_status().json()
    emails = (
        (await client.get(f"{provider.api_url}/user/emails", headers=headers))
        .raise_for_status()
        .json()
    )
    primary = next((e for e in emails if e.get("primary")), None)
    return Identity(
        subject=str(user["id"]),
        email=primary.get("email") if primary else None,
        email_verified=bool(primary and primary.get("verified") is True),
        name=str(user.get("name") or user.get("login") or ""),
        login=user.get("login"),
    )


async def _discord(client: AsyncOAuth2Client, provider: Provider) -> Identity:
    me = (await client.get(f"{provider.api_url}/users/@me")).raise_for_status().json()
    return Identity(
        subject=str(me["id"]),
        email=me.get("email"),
        email_verified=me.get("verified") is True,
        name=str(me.get("global_name") or me.get("username") or ""),
        login=me.get("username"),
    )


# the application's key for what this module provides (typed app state)
OAUTH = web.AppKey("oauth", OAuthService)
