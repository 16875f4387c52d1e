"""JWT access and refresh tokens.

Access tokens are short-lived and carry who the user is and which server-side session they
belong to; refresh tokens carry only the session and a one-time id that rotates on every use.
Only HS256 is accepted: `alg: none` and every other algorithm are refused by pyjwt because we
pass the allowed list explicitly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from ..errors import Unauthorized

ALGORITHM = "HS256"

# Access tokens whose signature was verified, kept by their exact text: every request and
# socket of a client presents the same token until it is refreshed, and verifying it again
# (PyJWT: base64, JSON, HMAC) was a quarter of a cached feed read's CPU. The text is the whole
# input of the check, so a kept verdict is the check's own; expiry is checked on every use.
VERIFIED_KEPT = 4096


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    username: str
    email: str
    role: str
    is_premium: bool


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    expires_at: int


def new_jti() -> str:
    return secrets.token_urlsafe(24)


def jti_digest(jti: str) -> str:
    """What the database keeps of a refresh token: a hash of its one-time id."""
    return hashlib.sha256(jti.encode()).hexdigest()


class TokenIssuer:
    def __init__(self, access_secret: str, refresh_secret: str, access_ttl: int) -> None:
        self._access_secret = access_secret
        self._refresh_secret = refresh_secret
        self.access_ttl = access_ttl
        self._verified: OrderedDict[str, tuple[float, AccessClaims]] = OrderedDict()

    def successor_jti(self, jti: str) -> str:
        """The one-time id of the refresh token that replaces `jti` when it is used. Derived,
        not random, so a second use of `jti` within the grace window can be given the very
        same new pair without storing any token (only the server, holding the secret, can
        derive it)."""
        mac = hmac.new(self._refresh_secret.encode(), b"rotate:" + jti.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")

    def access_token(self, claims: AccessClaims, issued_at: int | None = None) -> str:
        now = int(time.time()) if issued_at is None else issued_at
        payload = {
            "typ": "access",
            "userId": str(claims.user_id),
            "sessionId": str(claims.session_id),
            "email": claims.email,
            "username": claims.username,
            "role": claims.role,
            "isPremium": claims.is_premium,
            "iat": now,
            "exp": now + self.access_ttl,
        }
        return jwt.encode(payload, self._access_secret, algorithm=ALGORITHM)

    def refresh_token(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        jti: str,
        exp: int,
        issued_at: int | None = None,
    ) -> str:
        payload = {
            "typ": "refresh",
            "userId": str(user_id),
            "sessionId": str(session_id),
            "jti": jti,
            "iat": int(time.time()) if issued_at is None else issued_at,
            "exp": exp,
        }
        return jwt.encode(payload, self._refresh_secret, algorithm=ALGORITHM)

    @staticmethod
    def _decode(token: str, secret: str, typ: str) -> dict[str, object]:
        if not token.isascii():
            raise Unauthorized("token is invalid", code="invalid_token")
        try:
            payload: dict[str, object] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("token is invalid", code="invalid_token") from None
        if payload.get("typ") != typ:
            raise Unauthorized("token is invalid", code="invalid_token")
        return payload

    def decode_access(self, token: str) -> AccessClaims:
        kept = self._verified.get(token)
        if kept is not None:
            expires, claims = kept
            if expires <= time.time():  # as PyJWT: expired once `exp` is not in the future
                del self._verified[token]
                raise Unauthorized("token has expired", code="token_expired")
            self._verified.move_to_end(token)
            return claims
        return self._decode_access(token)

    def _decode_access(self, token: str) -> AccessClaims:
        payload = self._decode(token, self._access_secret, "access")
        try:
            claims = AccessClaims(
                user_id=uuid.UUID(str(payload["userId"])),
                session_id=uuid.UUID(str(payload["sessionId"])),
                username=str(payload["username"]),
                email=str(payload["email"]),
                role=str(payload["role"]),
                is_premium=bool(payload["isPremium"]),
            )
            expires = float(str(payload["exp"]))
        except (KeyError, ValueError):
            raise Unauthorized("token is invalid", code="invalid_token") from None
        self._verified[token] = (expires, claims)
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return claims

    def decode_refresh(self, token: str) -> RefreshClaims:
        payload = self._decode(token, self._refresh_secret, "refresh")
        try:
            return RefreshClaims(
                user_id=uuid.UUID(str(payload["userId"])),
                session_id=uuid.UUID(str(payload["sessionId"])),
                jti=str(payload["jti"]),
                expires_at=int(str(payload["exp"])),
            )
        except (KeyError, ValueError):
            raise Unauthorized("token is invalid", code="invalid_token") from None
