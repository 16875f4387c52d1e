"""Access tokens whose signature was verified are kept by their text (accounts/tokens.py): a
kept token still expires on time, and nothing but the exact text that was verified is
accepted from the memo."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from peerspark_rt.accounts.tokens import AccessClaims, TokenIssuer
from peerspark_rt.errors import Unauthorized

CLAIMS = AccessClaims(uuid.uuid4(), uuid.uuid4(), "ada", "ada@example.com", "user", False)


async def test_a_kept_token_still_expires() -> None:
    issuer = TokenIssuer("a" * 40, "b" * 40, access_ttl=2)
    token = issuer.access_token(CLAIMS, issued_at=int(time.time()) - 1)  # exp: within ~1 s
    assert issuer.decode_access(token) == CLAIMS
    assert issuer.decode_access(token) == CLAIMS  # from the memo
    await asyncio.sleep(1.2)
    with pytest.raises(Unauthorized) as refused:
        issuer.decode_access(token)
    assert refused.value.code == "token_expired"
    with pytest.raises(Unauthorized):  # and again, now that it left the memo
        issuer.decode_access(token)


def test_only_the_verified_text_is_kept() -> None:
    issuer = TokenIssuer("a" * 40, "b" * 40, access_ttl=600)
    token = issuer.access_token(CLAIMS)
    assert issuer.decode_access(token) == CLAIMS
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthorized):
        issuer.decode_access(forged)
    other = TokenIssuer("c" * 40, "b" * 40, access_ttl=600)  # another secret: its own memo
    with pytest.raises(Unauthorized):
        other.decode_access(token)
