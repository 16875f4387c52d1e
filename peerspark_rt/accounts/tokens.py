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
from dataclasses import dataclass

import jwt

from ..errors import Unauthorized

ALGORITHM = "HS256"


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
        payload = self._decode(token, self._access_secret, "access")
        try:
            return AccessClaims(
                user_id=uuid.UUID(str(payload["userId"])),
                session_id=uuid.UUID(str(payload["sessionId"])),
                username=str(payload["username"]),
                email=str(payload["email"]),
                role=str(payload["role"]),
                is_premium=bool(payload["isPremium"]),
            )
        except (KeyError, ValueError):
            raise Unauthorized("token is invalid", code="invalid_token") from None

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
